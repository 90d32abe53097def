"""Guest `apt-get`, `node` and `npm` (stdlib only; see `vps_guest.py`).

Installing records packages in `/var/lib/ocsim/packages.json` and creates the
tools' wrappers in the VPS's /usr/bin, so `command -v node` fails until nodejs is
installed, as on a fresh Ubuntu. nodejs is NodeSource's 24.x when its list was
set up (by the NodeSource script that `curl` serves), else Ubuntu's 18.x without
npm. `npm install -g openclaw@V` without `--allow-scripts=openclaw` installs a
build whose gateway cannot start, as npm 11 skips the install scripts.
"""

from __future__ import annotations

import json
import os
import shutil

from sim.vps_guest import (
    NODE_NODESOURCE,
    NODE_UBUNTU,
    NODESOURCE_LIST,
    NPM_VERSION,
    OPENCLAW_LATEST,
    PACKAGES,
    err,
    load_packages,
    need_root,
    out,
    write_wrapper,
)

SIMULATE = {"-s", "--simulate", "--just-print", "--dry-run", "--recon", "--no-act"}
PENDING_UPGRADES = "/var/lib/ocsim/pending-upgrades"


def apt_get(args: list[str]) -> int:
    words = [a for a in args if not a.startswith("-")]
    skip_next = {"-o", "-t", "-c"}
    words = [
        w for i, w in enumerate(args) if not w.startswith("-") and args[i - 1] not in skip_next
    ]
    if not words:
        err("E: No command given\n")
        return 100
    verb, packages = words[0], words[1:]
    if SIMULATE & set(args) and verb in ("upgrade", "dist-upgrade", "full-upgrade"):
        return _simulated_upgrade()
    if (
        denied := need_root(
            "apt-get",
            "E: Could not open lock file /var/lib/dpkg/lock-frontend"
            " - open (13: Permission denied)\n",
            100,
        )
    ) is not None:
        return denied
    if verb == "update":
        out("Hit:1 http://ports.ubuntu.com/ubuntu-ports noble InRelease\n")
        if os.path.exists(NODESOURCE_LIST):
            out("Get:2 https://deb.nodesource.com/node_24.x nodistro InRelease [12.1 kB]\n")
        out("Reading package lists... Done\n")
        return 0
    if verb not in (
        "install",
        "upgrade",
        "dist-upgrade",
        "full-upgrade",
        "remove",
        "purge",
        "autoremove",
        "clean",
        "autoclean",
    ):
        err(f"E: Invalid operation {verb}\n")
        return 100
    installed = load_packages()
    out("Reading package lists... Done\nBuilding dependency tree... Done\n")
    for package in packages:
        name = package.split("=")[0]
        if verb in ("remove", "purge"):
            installed.pop(name, None)
            continue
        if name == "nodejs":
            node = NODE_NODESOURCE if os.path.exists(NODESOURCE_LIST) else NODE_UBUNTU
            installed[name] = node.lstrip("v")
            os.makedirs("/var/lib/ocsim", exist_ok=True)
            with open("/var/lib/ocsim/node-version", "w") as f:
                f.write(node + "\n")
            write_wrapper("/usr/bin/node", "node")
            if node == NODE_NODESOURCE:  # NodeSource's nodejs ships npm; Ubuntu's does not
                write_wrapper("/usr/bin/npm", "npm")
                write_wrapper("/usr/bin/npx", "npx")
        elif name == "npm":
            write_wrapper("/usr/bin/npm", "npm")
            installed[name] = "9.2.0"
        else:
            installed[name] = "sim"
        out(f"Setting up {name} ({installed[name]}) ...\n")
    os.makedirs(os.path.dirname(PACKAGES), exist_ok=True)
    with open(PACKAGES, "w") as f:
        json.dump(installed, f)
    return 0


def _simulated_upgrade() -> int:
    """`apt-get -s dist-upgrade`: what would be upgraded, changing nothing (no root
    needed). The pending upgrades are the `Inst ...` lines in PENDING_UPGRADES, which a
    test writes into the VPS (none by default: a fresh, up-to-date server)."""
    out("NOTE: This is only a simulation!\n")
    out("      apt-get needs root privileges for real execution.\n")
    out("Reading package lists... Done\nBuilding dependency tree... Done\n")
    try:
        with open(PENDING_UPGRADES) as f:
            lines = [line.strip() for line in f if line.startswith("Inst ")]
    except OSError:
        lines = []
    for line in lines:
        out(line + "\n")
    for line in lines:
        out("Conf" + line[4:] + "\n")
    out(f"{len(lines)} upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n")
    return 0


def node(args: list[str]) -> int:
    try:
        with open("/var/lib/ocsim/node-version") as f:
            version = f.read().strip()
    except OSError:
        err("node: command not found\n")
        return 127
    if args[:1] in (["--version"], ["-v"]):
        out(version + "\n")
        return 0
    if (args and args[0].startswith("-e")) or args[:1] == ["-p"]:
        return 0
    script = next((a for a in args if not a.startswith("-")), "")
    if script.endswith("openclaw/dist/index.js") or script.endswith("openclaw.mjs"):
        from sim.vps_guest_openclaw import openclaw

        return openclaw(args[args.index(script) + 1 :])
    err(f"node: cannot run {script!r} in the simulator\n")
    return 1


def npm(args: list[str]) -> int:
    if args[:1] in (["--version"], ["-v"]):
        out(NPM_VERSION + "\n")
        return 0
    words = [a for a in args if not a.startswith("-")]
    global_ = "-g" in args or "--global" in args
    if words[:1] in (["install"], ["i"], ["add"]) and global_:
        if (denied := need_root("npm", "npm error code EACCES\n", 243)) is not None:
            return denied
        allowed = any(a.startswith("--allow-scripts=") and "openclaw" in a for a in args)
        for spec in words[1:]:
            name, _, version = spec.partition("@")
            if name != "openclaw":
                out(f"added 1 package ({name})\n")
                continue
            version = version or "latest"
            if version == "latest":
                version = OPENCLAW_LATEST
            if not version.replace(".", "").isdigit() or version.count(".") != 2:
                err("npm error code ETARGET\n")
                err(f"npm error notarget No matching version found for {spec}.\n")
                return 1
            root = "/usr/lib/node_modules/openclaw"
            shutil.rmtree(root, ignore_errors=True)
            os.makedirs(root + "/dist")
            with open(root + "/package.json", "w") as f:
                json.dump({"name": "openclaw", "version": version}, f)
            with open(root + "/dist/index.js", "w") as f:
                f.write("// simulated openclaw\n")
            if not allowed:
                with open(root + "/.ocsim-scripts-skipped", "w") as f:
                    f.write("npm 11 skipped install scripts\n")
                err(
                    "npm warn install scripts skipped for openclaw (use --allow-scripts=openclaw)\n"
                )
            write_wrapper("/usr/bin/openclaw", "openclaw")
            out("\nadded 412 packages in 31s\n")
        return 0
    if words[:1] in (["uninstall"], ["remove"], ["rm"]) and global_:
        if "openclaw" in words:
            shutil.rmtree("/usr/lib/node_modules/openclaw", ignore_errors=True)
            if os.path.exists("/usr/bin/openclaw"):
                os.remove("/usr/bin/openclaw")
        return 0
    if words[:1] in (["ls"], ["list"]) and global_:
        try:
            with open("/usr/lib/node_modules/openclaw/package.json") as f:
                version = json.load(f)["version"]
        except OSError:
            out("/usr/lib\n`-- (empty)\n")
            return 0
        if "--json" in args:
            out(json.dumps({"dependencies": {"openclaw": {"version": version}}}) + "\n")
        else:
            out(f"/usr/lib\n`-- openclaw@{version}\n")
        return 0
    err(f"npm: '{' '.join(args)}' is not simulated\n")
    return 1
