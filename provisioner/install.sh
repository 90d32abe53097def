#!/usr/bin/env bash
# Install and harden an OpenClaw gateway on a fresh (or golden-image) Ubuntu 24.04 server.
#
# Run as root with `bash -s`; the gateway password arrives as `PW='...'` on the lines
# before this script on stdin, so it is never on a command line (`ps`, logs).
# Idempotent: running it again repairs a half-done install and skips finished work.
# Tools are called by name, never by absolute path (the simulator shims them).
# Fails (non-zero) unless the gateway answers /readyz and `openclaw security audit`
# reports nothing above "info".
set -euo pipefail

# Filled in by provisioner/install.py.
OPENCLAW_VERSION="@OPENCLAW_VERSION@"
GATEWAY_PORT="@GATEWAY_PORT@"
PUBLIC_IP="@PUBLIC_IP@"
REBOOT_TIME="@REBOOT_TIME@"
READY_TIMEOUT_S="@READY_TIMEOUT_S@"

OPENCLAW_USER=openclaw
OPENCLAW_HOME=/home/openclaw
STATE_DIR="$OPENCLAW_HOME/.openclaw"
ENV_FILE="$STATE_DIR/.env"
OPENCLAW_ROOT=/usr/lib/node_modules/openclaw
UNIT=openclaw-gateway
NODE_MIN_MAJOR=24
NODE_MIN_MINOR=16

export DEBIAN_FRONTEND=noninteractive

step() {
  printf '==> %s\n' "$*"
}

as_openclaw() {
  sudo -u "$OPENCLAW_USER" -H "$@"
}

# -- the host --------------------------------------------------------------------

harden_ssh() {
  step "sshd: keys only"
  # sshd keeps the first value it reads and reads sshd_config.d in lexical order,
  # so 00- wins over cloud-init's 50-cloud-init.conf.
  mkdir -p /etc/ssh/sshd_config.d
  cat >/etc/ssh/sshd_config.d/00-openclaw-hosted.conf <<'CONF'
# Managed by OpenClaw Hosted: key-based login only.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
CONF
  # Ubuntu's ssh.service validates the configuration (sshd -t) before reloading; when
  # it is not running (socket activation), the next start reads the new file anyway.
  systemctl try-reload-or-restart ssh
}

node_is_recent() {
  local version major minor
  version="$(node --version 2>/dev/null || true)"
  version="${version#v}"
  major="${version%%.*}"
  minor="${version#*.}"
  minor="${minor%%.*}"
  [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || return 1
  ((major > NODE_MIN_MAJOR || (major == NODE_MIN_MAJOR && minor >= NODE_MIN_MINOR)))
}

install_node() {
  if node_is_recent; then
    step "node $(node --version) already installed"
    return
  fi
  step "node 24 from NodeSource"
  # Ubuntu's own nodejs is too old for OpenClaw (node:sqlite needs >= 24.16).
  curl -fsSL https://deb.nodesource.com/setup_24.x | bash -
  apt-get install -y nodejs
  if ! node_is_recent; then
    echo "node $(node --version 2>/dev/null || echo missing) is older than 24.16" >&2
    return 1
  fi
}

unattended_upgrades() {
  step "unattended security upgrades, reboot at $REBOOT_TIME UTC when needed"
  apt-get install -y unattended-upgrades
  cat >/etc/apt/apt.conf.d/20auto-upgrades <<'CONF'
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
CONF
  # After Ubuntu's 50unattended-upgrades, so these values win. The reboot time is
  # staggered per instance so that the fleet does not go down at once.
  cat >/etc/apt/apt.conf.d/52openclaw-hosted-reboot <<CONF
Unattended-Upgrade::Automatic-Reboot "true";
Unattended-Upgrade::Automatic-Reboot-WithUsers "true";
Unattended-Upgrade::Automatic-Reboot-Time "$REBOOT_TIME";
CONF
  systemctl enable --now unattended-upgrades
}

# -- OpenClaw ----------------------------------------------------------------------

openclaw_is_pinned() {
  local reported word
  reported="$(openclaw --version 2>/dev/null || true)"
  for word in $reported; do
    [[ "$word" == "$OPENCLAW_VERSION" || "$word" == "v$OPENCLAW_VERSION" ]] && return 0
  done
  return 1
}

install_openclaw() {
  if openclaw_is_pinned; then
    step "openclaw $OPENCLAW_VERSION already installed"
    return
  fi
  step "openclaw $OPENCLAW_VERSION"
  # npm 11 skips install scripts unless allowed, and OpenClaw needs its own.
  npm install -g --allow-scripts=openclaw "openclaw@$OPENCLAW_VERSION"
  if ! openclaw_is_pinned; then
    echo "openclaw --version does not report $OPENCLAW_VERSION after npm install" >&2
    return 1
  fi
}

ensure_user() {
  if ! id "$OPENCLAW_USER" >/dev/null 2>&1; then
    step "user $OPENCLAW_USER"
    useradd -m -d "$OPENCLAW_HOME" -s /bin/bash "$OPENCLAW_USER"
  fi
  # The state dir is never readable by others, from its first byte on.
  install -d -m 700 -o "$OPENCLAW_USER" -g "$OPENCLAW_USER" "$STATE_DIR"
  loginctl enable-linger "$OPENCLAW_USER"
}

onboard() {
  local mode
  mode="$(as_openclaw openclaw config get gateway.auth.mode 2>/dev/null || true)"
  mode="${mode//\"/}"
  if [[ "$mode" == password ]]; then
    # Already onboarded: onboarding again would reset the customer's gateway settings.
    step "openclaw already onboarded"
    return
  fi
  step "openclaw onboarding"
  # Onboarding insists on a password on its command line, where anyone can read it
  # (ps, process accounting): it gets a throwaway one, removed from openclaw.json below,
  # and the real one only ever goes to the .env file.
  local throwaway
  throwaway="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  as_openclaw openclaw onboard --non-interactive --accept-risk --mode local \
    --auth-choice skip --gateway-auth password --gateway-password "$throwaway" \
    --gateway-bind lan --gateway-port "$GATEWAY_PORT" --skip-channels --skip-skills \
    --skip-search --skip-daemon --skip-health --skip-ui --json
}

write_password() {
  step "gateway password in $ENV_FILE"
  : "${PW:?the gateway password must come first on stdin as PW=...}"
  local tmp
  tmp="$(mktemp "$STATE_DIR/.env.XXXXXX")"
  # Keep whatever else the customer keeps there (provider API keys), replace our line.
  if [[ -f "$ENV_FILE" ]]; then
    grep -Ev '^[[:space:]]*(export[[:space:]]+)?OPENCLAW_GATEWAY_PASSWORD=' "$ENV_FILE" \
      >"$tmp" || true
  fi
  printf 'OPENCLAW_GATEWAY_PASSWORD=%s\n' "$PW" >>"$tmp"
  chown "$OPENCLAW_USER:$OPENCLAW_USER" "$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$ENV_FILE"
}

configure_gateway() {
  step "gateway hardening"
  # Already absent on a re-run; should it stay behind, the audit below fails the install.
  as_openclaw openclaw config unset gateway.auth.password || true
  as_openclaw openclaw config set gateway.auth.rateLimit \
    '{"maxAttempts":10,"windowMs":60000,"lockoutMs":300000}' --strict-json
  as_openclaw openclaw config set gateway.controlUi.allowedOrigins \
    "[\"http://$PUBLIC_IP:$GATEWAY_PORT\"]" --strict-json
  chmod 700 "$STATE_DIR"
  if [[ -f "$STATE_DIR/openclaw.json" ]]; then
    chmod 600 "$STATE_DIR/openclaw.json"
  fi
}

write_unit() {
  step "systemd unit $UNIT"
  cat >"/etc/systemd/system/$UNIT.service" <<UNIT
[Unit]
Description=OpenClaw Gateway
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=$OPENCLAW_USER
Group=$OPENCLAW_USER
WorkingDirectory=$OPENCLAW_HOME
Environment=HOME=$OPENCLAW_HOME
Environment=OPENCLAW_NO_AUTO_UPDATE=1
EnvironmentFile=$ENV_FILE
ExecStart=/usr/bin/node --max-old-space-size=2048 $OPENCLAW_ROOT/dist/index.js gateway --port $GATEWAY_PORT
Restart=always
RestartSec=5
RestartPreventExitStatus=78
TimeoutStartSec=90
KillMode=mixed

[Install]
WantedBy=multi-user.target
UNIT
}

start_gateway() {
  step "starting $UNIT"
  systemctl daemon-reload
  systemctl enable "$UNIT"
  # Restart, not start: a gateway already running must pick up the new settings.
  systemctl restart "$UNIT"
}

wait_ready() {
  step "waiting for /readyz"
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    if curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$GATEWAY_PORT/readyz" 2>/dev/null; then
      step "gateway ready"
      return
    fi
    if systemctl is-failed --quiet "$UNIT"; then
      break # it will not come back by itself (e.g. exit 78, a refused configuration)
    fi
    sleep 0.2
  done
  echo "the gateway did not become ready within $READY_TIMEOUT_S s" >&2
  systemctl status "$UNIT" --no-pager >&2 || true
  journalctl -u "$UNIT" -n 40 --no-pager >&2 || true
  return 1
}

security_audit() {
  step "openclaw security audit"
  local report
  report="$(as_openclaw openclaw security audit --json)"
  printf '%s\n' "$report"
  # python3 is part of every Ubuntu server image (cloud-init is written in it).
  if ! printf '%s' "$report" | python3 -c '
import json, sys
findings = json.load(sys.stdin).get("findings", [])
bad = [f for f in findings if f.get("severity") != "info"]
for f in bad:
    print("audit:", f.get("severity"), f.get("checkId"), "-", f.get("title"), file=sys.stderr)
sys.exit(1 if bad else 0)
'; then
    echo "openclaw security audit reports warnings" >&2
    return 1
  fi
}

main() {
  harden_ssh
  install_node
  unattended_upgrades
  install_openclaw
  ensure_user
  onboard
  write_password
  configure_gateway
  write_unit
  start_gateway
  wait_ready
  security_audit
  step "done"
}

# Run from a function, with stdin closed: bash reads `bash -s` scripts as it goes, so
# a command reading stdin would otherwise swallow the rest of the script.
main </dev/null
