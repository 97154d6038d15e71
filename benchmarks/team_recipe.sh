#!/usr/bin/env bash
# The README's "Running as a team" recipe followed literally on one machine, as a new team
# would: PostgreSQL on 127.0.0.1 (a `postgres` superuser with password-free local access),
# the tracking server on loopback with served artifacts in a temporary folder. It makes
# the roles and databases (their names suffixed, dropped at the end), starts the server,
# runs the admin's Python snippet for the users, prepares the posters as `ana` on
# "machine 1", tunes on "machines 2 and 3" at once with nothing shared but the server and
# the studies database, evaluates and registers, and serves the champion as `viewer`, who
# then scores a poster over HTTP. Each step echoes what it runs; the first failure stops it.
#
#   bash benchmarks/team_recipe.sh        (a few minutes on two cores; RESULTS.md has the latest)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
SUFFIX="recipe$$"
WORK="$(mktemp -d)"
PG=(-h 127.0.0.1 -U postgres)
free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
SERVE_PORT="$(free_port)"
SERVER_PID=""
VIEWER_PID=""
cleanup() {
  [ -n "$VIEWER_PID" ] && kill "$VIEWER_PID" 2>/dev/null && wait "$VIEWER_PID" 2>/dev/null
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  for database in "mlflow_$SUFFIX" "mlflow_auth_$SUFFIX" "poster_ml_studies_$SUFFIX"; do
    dropdb "${PG[@]}" --if-exists --force "$database" || true
  done
  dropuser "${PG[@]}" --if-exists "mlflow_$SUFFIX" || true
  dropuser "${PG[@]}" --if-exists "optuna_$SUFFIX" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # A signal ends the script through the cleanup too.
step() { echo; echo "== $*"; }
wait_for() {  # URL: waits up to two minutes for it to answer 200
  for _ in $(seq 240); do curl -sf -o /dev/null "$1" && return 0; sleep 0.5; done
  echo "no answer from $1" >&2; return 1
}

step "roles and databases, as the database's administrator"
createuser "${PG[@]}" "mlflow_$SUFFIX"; createuser "${PG[@]}" "optuna_$SUFFIX"
createdb "${PG[@]}" -O "mlflow_$SUFFIX" "mlflow_$SUFFIX"
createdb "${PG[@]}" -O "mlflow_$SUFFIX" "mlflow_auth_$SUFFIX"
createdb "${PG[@]}" -O "optuna_$SUFFIX" "poster_ml_studies_$SUFFIX"

step "the server"
export POSTER_ML_ADMIN_PASSWORD='a long secret of the recipe'
mkdir -p "$WORK/server"
(cd "$WORK/server" && exec poster-ml server \
  --backend-store-uri "postgresql://mlflow_$SUFFIX@127.0.0.1/mlflow_$SUFFIX" \
  --auth-database-uri "postgresql://mlflow_$SUFFIX@127.0.0.1/mlflow_auth_$SUFFIX" \
  --artifacts-destination "$WORK/server/artifacts" --host 127.0.0.1 --port "$PORT" \
  > "$WORK/server.log" 2>&1) &
SERVER_PID=$!
wait_for "http://127.0.0.1:$PORT/health"
URI="http://127.0.0.1:$PORT"

step "users and permissions: the README's snippet, run as admin"
MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD="$POSTER_ML_ADMIN_PASSWORD" python - "$URI" <<'PY'
import sys

import mlflow
from mlflow.server import get_app_client

uri = sys.argv[1]
mlflow.set_tracking_uri(uri)
experiment_id = mlflow.set_experiment("poster-ml").experiment_id  # made if it is not there
auth = get_app_client("basic-auth", tracking_uri=uri)
auth.create_user("ana", "her password")                      # a data scientist who trains
auth.grant_user_permission("ana", "experiment", experiment_id, "EDIT")
auth.create_user("viewer", "their password")                 # browses and loads the champion
auth.grant_user_permission("viewer", "experiment", experiment_id, "READ")
auth.grant_user_permission("viewer", "registered_model", "poster-ml", "READ")
PY

export MLFLOW_TRACKING_URI="$URI" MLFLOW_TRACKING_USERNAME=ana MLFLOW_TRACKING_PASSWORD="her password"
export STUDIES="postgresql+psycopg://optuna_$SUFFIX@127.0.0.1/poster_ml_studies_$SUFFIX"
TINY=(--variants basic_cnn --overrides "max_epochs=4")
for machine in 1 2 3 4; do mkdir -p "$WORK/machine$machine"; done

step "machine 1: preprocess (synthetic posters stand in for labels.csv)"
(cd "$WORK/machine1" && HOME="$WORK/machine1" poster-ml preprocess --count 400 --size 64) | tee "$WORK/preprocess.log"
DATA="$(grep -o 'runs:/[0-9a-f]*/prepared' "$WORK/preprocess.log" | head -n 1)"
echo "the data to train on: $DATA"
rm -rf "$WORK/machine1"  # Nothing of machine 1 is needed any more.

step "machines 2 and 3 at once: one study, 6 trials in all"
WORKERS=()
for machine in 2 3; do
  (cd "$WORK/machine$machine" && HOME="$WORK/machine$machine" \
    poster-ml train --data "$DATA" --trials 6 --storage "$STUDIES" --study-name posters-v1 "${TINY[@]}" \
    > "$WORK/train$machine.log" 2>&1) &
  WORKERS+=($!)
done
for worker in "${WORKERS[@]}"; do
  wait "$worker" || { tail -n 30 "$WORK"/train*.log; exit 1; }
done
tail -n 3 "$WORK/train2.log" "$WORK/train3.log"

step "machine 4: evaluate and register"
cd "$WORK/machine4"
export HOME="$WORK/machine4"
poster-ml evaluate --bootstrap-samples 200 --activations-variant none | tail -n 5
poster-ml register --allow-cpu true

step "the champion served as the viewer"
MLFLOW_TRACKING_USERNAME=viewer MLFLOW_TRACKING_PASSWORD="their password" \
  poster-ml serve --model models:/poster-ml@champion --port "$SERVE_PORT" > "$WORK/serve.log" 2>&1 &
VIEWER_PID=$!
wait_for "http://127.0.0.1:$SERVE_PORT/ping" || { cat "$WORK/serve.log"; exit 1; }
python -c 'from PIL import Image; Image.new("RGB", (206, 305), (200, 40, 40)).save("poster.jpg")'
IMAGE=$(base64 -w0 poster.jpg)
curl -sf "localhost:$SERVE_PORT/invocations" -H 'Content-Type: application/json' \
  -d "{\"dataframe_split\": {\"columns\": [\"image\"], \"data\": [[\"$IMAGE\"]]}}"
echo
step "the recipe worked as written"
