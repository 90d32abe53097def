"""A QR code of the welcome page's Telegram link, drawn as inline SVG.

Written here rather than taken from a library: the storefront needs exactly one kind
of code (byte mode, error correction level M, versions 1-10, which hold up to 213
bytes; a t.me deep link is under 120), and inline SVG needs no image source in the
Content-Security-Policy. The steps and their names follow ISO/IEC 18004: encode the
bytes, add Reed-Solomon error correction per block, interleave the blocks, draw the
function patterns, place the bits in the zigzag, and keep the mask with the lowest
penalty.
"""

from __future__ import annotations

from collections.abc import Callable

# Level M, versions 1-10: (error correction codewords per block, [(blocks, data codewords)]).
_BLOCKS: dict[int, tuple[int, list[tuple[int, int]]]] = {
    1: (10, [(1, 16)]),
    2: (16, [(1, 28)]),
    3: (26, [(1, 44)]),
    4: (18, [(2, 32)]),
    5: (24, [(2, 43)]),
    6: (16, [(4, 27)]),
    7: (18, [(4, 31)]),
    8: (22, [(2, 38), (2, 39)]),
    9: (22, [(3, 36), (2, 37)]),
    10: (26, [(4, 43), (1, 44)]),
}
_ALIGNMENT: dict[int, list[int]] = {
    1: [],
    2: [6, 18],
    3: [6, 22],
    4: [6, 26],
    5: [6, 30],
    6: [6, 34],
    7: [6, 22, 38],
    8: [6, 24, 42],
    9: [6, 26, 46],
    10: [6, 28, 50],
}
_LEVEL_M_FORMAT_BITS = 0b00
MAX_BYTES = 213  # version 10 at level M, less the mode and length header

_MASKS: list[Callable[[int, int], bool]] = [
    lambda x, y: (x + y) % 2 == 0,
    lambda x, y: y % 2 == 0,
    lambda x, y: x % 3 == 0,
    lambda x, y: (x + y) % 3 == 0,
    lambda x, y: (x // 3 + y // 2) % 2 == 0,
    lambda x, y: x * y % 2 + x * y % 3 == 0,
    lambda x, y: (x * y % 2 + x * y % 3) % 2 == 0,
    lambda x, y: ((x + y) % 2 + x * y % 3) % 2 == 0,
]


def _data_capacity(version: int) -> int:
    return sum(count * size for count, size in _BLOCKS[version][1])


def _choose_version(length: int) -> int:
    for version in _BLOCKS:
        count_bits = 8 if version < 10 else 16
        if 4 + count_bits + 8 * length <= 8 * _data_capacity(version):
            return version
    raise ValueError(f"{length} bytes do not fit a version 10 QR code")


def _data_codewords(data: bytes, version: int) -> list[int]:
    bits: list[int] = []

    def put(value: int, width: int) -> None:
        bits.extend((value >> i) & 1 for i in reversed(range(width)))

    put(0b0100, 4)  # byte mode
    put(len(data), 8 if version < 10 else 16)
    for byte in data:
        put(byte, 8)
    capacity = 8 * _data_capacity(version)
    put(0, min(4, capacity - len(bits)))  # terminator
    put(0, -len(bits) % 8)
    codewords = [int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8)]
    pad = (0xEC, 0x11)
    codewords += [pad[i % 2] for i in range(capacity // 8 - len(codewords))]
    return codewords


# Reed-Solomon over GF(256) with the QR polynomial x^8 + x^4 + x^3 + x^2 + 1.
_EXP = [0] * 512
_LOG = [0] * 256
_value = 1
for _i in range(255):
    _EXP[_i] = _value
    _LOG[_value] = _i
    _value <<= 1
    if _value & 0x100:
        _value ^= 0x11D
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


def _multiply(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def _generator(degree: int) -> list[int]:
    """Coefficients of (x - a^0)(x - a^1)...(x - a^(degree-1)), highest power first."""
    poly = [1]
    for i in range(degree):
        poly = [*poly, 0]
        for j in range(len(poly) - 1, 0, -1):
            poly[j] ^= _multiply(poly[j - 1], _EXP[i])
    return poly


def _error_correction(block: list[int], degree: int) -> list[int]:
    generator = _generator(degree)
    remainder = [0] * degree
    for codeword in block:
        factor = codeword ^ remainder[0]
        remainder = [*remainder[1:], 0]
        for i in range(degree):
            remainder[i] ^= _multiply(generator[i + 1], factor)
    return remainder


def _interleaved(data: list[int], version: int) -> list[int]:
    ec_length, groups = _BLOCKS[version]
    blocks: list[list[int]] = []
    start = 0
    for count, size in groups:
        for _ in range(count):
            blocks.append(data[start : start + size])
            start += size
    ecs = [_error_correction(block, ec_length) for block in blocks]
    result = [b[i] for i in range(max(map(len, blocks))) for b in blocks if i < len(b)]
    return result + [ec[i] for i in range(ec_length) for ec in ecs]


class _Matrix:
    def __init__(self, version: int) -> None:
        self.version = version
        self.size = 17 + 4 * version
        self.dark = [[False] * self.size for _ in range(self.size)]
        self.function = [[False] * self.size for _ in range(self.size)]

    def set(self, x: int, y: int, dark: bool) -> None:
        """A function-pattern module (x is the column, y the row)."""
        self.dark[y][x] = dark
        self.function[y][x] = True

    def draw_function_patterns(self) -> None:
        size = self.size
        for i in range(size):  # timing patterns
            self.set(6, i, i % 2 == 0)
            self.set(i, 6, i % 2 == 0)
        for cx, cy in ((3, 3), (size - 4, 3), (3, size - 4)):
            for dy in range(-4, 5):
                for dx in range(-4, 5):
                    x, y = cx + dx, cy + dy
                    if 0 <= x < size and 0 <= y < size:
                        ring = max(abs(dx), abs(dy))
                        self.set(x, y, ring not in (2, 4))
        positions = _ALIGNMENT[self.version]
        first, last = (positions[0], positions[-1]) if positions else (-1, -1)
        corners = {(first, first), (first, last), (last, first)}  # under the finder patterns
        for cy in positions:
            for cx in positions:
                if (cx, cy) in corners:
                    continue
                for dy in range(-2, 3):
                    for dx in range(-2, 3):
                        self.set(cx + dx, cy + dy, max(abs(dx), abs(dy)) != 1)
        self.draw_format(0)  # reserves the areas; the real bits come with the mask
        self.draw_version()

    def draw_format(self, mask: int) -> None:
        data = _LEVEL_M_FORMAT_BITS << 3 | mask
        remainder = data
        for _ in range(10):
            remainder = (remainder << 1) ^ ((remainder >> 9) * 0x537)
        bits = (data << 10 | remainder) ^ 0x5412
        size = self.size

        def bit(i: int) -> bool:
            return (bits >> i) & 1 == 1

        for i in range(6):
            self.set(8, i, bit(i))
        self.set(8, 7, bit(6))
        self.set(8, 8, bit(7))
        self.set(7, 8, bit(8))
        for i in range(9, 15):
            self.set(14 - i, 8, bit(i))
        for i in range(8):
            self.set(size - 1 - i, 8, bit(i))
        for i in range(8, 15):
            self.set(8, size - 15 + i, bit(i))
        self.set(8, size - 8, True)  # the dark module

    def draw_version(self) -> None:
        if self.version < 7:
            return
        remainder = self.version
        for _ in range(12):
            remainder = (remainder << 1) ^ ((remainder >> 11) * 0x1F25)
        bits = self.version << 12 | remainder
        for i in range(18):
            dark = (bits >> i) & 1 == 1
            a, b = self.size - 11 + i % 3, i // 3
            self.set(a, b, dark)
            self.set(b, a, dark)

    def place(self, codewords: list[int]) -> None:
        """The zigzag: two-module columns from the right, up then down, skipping column 6."""
        bits = [(byte >> (7 - i)) & 1 for byte in codewords for i in range(8)]
        index = 0
        right = self.size - 1
        while right >= 1:
            if right == 6:
                right = 5
            upward = (right + 1) & 2 == 0
            for vertical in range(self.size):
                y = self.size - 1 - vertical if upward else vertical
                for x in (right, right - 1):
                    if not self.function[y][x]:
                        # Left-over modules (remainder bits) stay light.
                        self.dark[y][x] = index < len(bits) and bits[index] == 1
                        index += 1
            right -= 2

    def apply_mask(self, mask: int) -> None:
        test = _MASKS[mask]
        for y in range(self.size):
            for x in range(self.size):
                if not self.function[y][x] and test(x, y):
                    self.dark[y][x] = not self.dark[y][x]

    def penalty(self) -> int:
        size, dark = self.size, self.dark
        lines = [row[:] for row in dark] + [[dark[y][x] for y in range(size)] for x in range(size)]
        score = 0
        for line in lines:  # N1: runs of five or more, and N3: finder-like patterns
            run, previous = 0, None
            for module in line:
                run = run + 1 if module == previous else 1
                previous = module
                if run == 5:
                    score += 3
                elif run > 5:
                    score += 1
            text = "0000" + "".join("1" if m else "0" for m in line) + "0000"
            score += 40 * (text.count("10111010000") + text.count("00001011101"))
        for y in range(size - 1):  # N2: 2x2 blocks of one colour
            for x in range(size - 1):
                if dark[y][x] == dark[y][x + 1] == dark[y + 1][x] == dark[y + 1][x + 1]:
                    score += 3
        total = sum(map(sum, dark))  # N4: balance of dark and light
        score += 10 * (abs(total * 20 - size * size * 10) // (size * size))
        return score


def qr_matrix(text: str) -> list[list[bool]]:
    """The modules of a QR code of `text` (rows of booleans, True is dark), no quiet zone."""
    data = text.encode()
    if len(data) > MAX_BYTES:
        raise ValueError(f"{len(data)} bytes do not fit a version 10 QR code")
    version = _choose_version(len(data))
    codewords = _interleaved(_data_codewords(data, version), version)
    best: _Matrix | None = None
    best_score = 0
    for mask in range(8):
        matrix = _Matrix(version)
        matrix.draw_function_patterns()
        matrix.place(codewords)
        matrix.apply_mask(mask)
        matrix.draw_format(mask)
        score = matrix.penalty()
        if best is None or score < best_score:
            best, best_score = matrix, score
    assert best is not None
    return best.dark


def qr_svg(text: str, *, label: str) -> str:
    """Inline SVG of the code with its four-module quiet zone; `label` must be escaped."""
    matrix = qr_matrix(text)
    size = len(matrix) + 8
    path = []
    for y, row in enumerate(matrix):
        x = 0
        while x < len(row):
            if row[x]:
                start = x
                while x < len(row) and row[x]:
                    x += 1
                path.append(f"M{start + 4} {y + 4}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    return (
        f'<svg class="qr" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'role="img" aria-label="{label}" shape-rendering="crispEdges">'
        f'<rect width="{size}" height="{size}" fill="#fff"/>'
        f'<path fill="#111827" d="{"".join(path)}"/></svg>'
    )
