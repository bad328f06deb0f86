#!/bin/sh
# bench/relay-floor.ts in FlashMQ's place (CULEX_FLASHMQ=bench/relay-floor.sh): see that file.
dir=$(dirname "$(readlink -f "$0")")
exec node --import tsx "$dir/relay-floor.ts" "$@"
