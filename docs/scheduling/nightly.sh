#!/usr/bin/env bash
# Nightly retrain and publish with recctl, for cron (see docs/scheduling.md).
#
#   nightly.sh CONFIG [NEW_EVENTS_FILE ...]
#
# 1. appends today's event files, if given (a file already ingested is skipped by its sha256);
# 2. retrains and evaluates (`recctl run --skip serve-export`; unchanged stages are skipped);
# 3. gates on the run history: the serving model's primary metric may not fall by more than
#    RECCTL_MAX_DROP (default 0.10, relative) since the previous run (`recctl history --max-drop`);
# 4. publishes (`recctl serve-export`: validated, the export gates applied, atomic).
#
# Every step runs with --json, so its answer (or its error) is one JSON object; the script ends
# by printing one JSON line: {"status": "published"|"failed", "step", "exit_code", "detail"}.
# The exit code is recctl's: 0 published; 3 config, 4 data, 5 artifact error; 7 a gate refused
# (yesterday's file stays published); 8 another recctl holds the workdir (nothing was done);
# 9 a machine fault (disk full, read-only path, ...); 1 a bug. Logs (JSON lines) go to
# RECCTL_LOG (default: stderr). Needs jq.
#
# crontab (02:17 every night; flock keeps a slow night from overlapping the next):
#   17 2 * * *  flock -n /tmp/recctl-nightly.lock /opt/shop/nightly.sh /opt/shop/shop.yaml \
#                 /data/exports/events-$(date +\%F).csv >> /var/log/recctl/nightly.jsonl 2>&1
set -uo pipefail

if [ $# -lt 1 ]; then
  echo "usage: nightly.sh CONFIG [NEW_EVENTS_FILE ...]" >&2
  exit 2
fi
CONFIG=$1
shift
RECCTL=${RECCTL:-recctl}
MAX_DROP=${RECCTL_MAX_DROP:-0.10}
LOG=${RECCTL_LOG:-/dev/stderr}

if ! command -v jq >/dev/null 2>&1; then
  echo '{"status": "failed", "step": "setup", "exit_code": 6, "detail": "jq is not installed"}'
  exit 6
fi

finish() {  # finish STATUS STEP EXIT_CODE DETAIL: the night's one JSON line, then exit
  jq -cn --arg status "$1" --arg step "$2" --argjson code "$3" --arg detail "$4" \
    '{status: $status, step: $step, exit_code: $code, detail: $detail}'
  exit "$3"
}

step() {  # step NAME RECCTL_ARGS...: run recctl, keep its JSON answer in $ANSWER, stop on failure
  local name=$1 rc
  shift
  # word splitting of $RECCTL is wanted: RECCTL="python -m recctl" works too
  # shellcheck disable=SC2086
  ANSWER=$($RECCTL "$@" --json --log-format json -q 2>>"$LOG")
  rc=$?
  if [ "$rc" -ne 0 ]; then
    finish failed "$name" "$rc" "$(jq -r '.error.message // "no answer"' <<<"$ANSWER" 2>/dev/null || echo "no answer")"
  fi
}

for events in "$@"; do
  step ingest ingest "$CONFIG" --append "$events"
done

step retrain run "$CONFIG" --skip serve-export
ran=$(jq -r '[.stages[] | select(.status == "ran") | .stage] | join(",")' <<<"$ANSWER")

step gate history "$CONFIG" --last 2 --max-drop "$MAX_DROP"

step publish serve-export "$CONFIG"
file=$(jq -r '.summary.published[0].path // "?"' <<<"$ANSWER")
rows=$(jq -r '.summary.published[0].rows // 0' <<<"$ANSWER")
finish published publish 0 "$file ($rows rows; stages run: ${ran:-none})"
