#!/usr/bin/env bash
# A backend service tailing a view instead of polling: every committed change
# to the view arrives as one line (event, LSN, JSON).
#   examples/tail.sh 127.0.0.1:8080 order_status
exec cargo run --release --quiet -- tail "${1:-127.0.0.1:8080}" "${2:-order_status}"
