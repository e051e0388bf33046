#!/bin/sh
# Entrypoint of both images (run under tini): entrypoint.sh DEFAULT [ARG...]
#
#   docker run IMAGE validate            -> DEFAULT validate   (skewless in the jobs image,
#   docker run IMAGE scheduler           -> DEFAULT scheduler   airflow in the Airflow image)
#   docker run IMAGE spark-submit ...    -> spark-submit ...    (a known program, or any path,
#   docker run IMAGE bash                -> bash                 runs as given)
set -eu
default="$1"
shift
if [ "$#" -gt 0 ]; then
  case "$1" in
    */* | skewless | airflow | spark-submit | spark-shell | spark-sql | pyspark | python | python3 | pip | bash | sh)
      exec "$@"
      ;;
  esac
fi
exec "$default" "$@"
