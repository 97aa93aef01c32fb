# Sourced by the bench scripts. wrk_summary NAME FILE prints one JSON object from a wrk report
# written with --latency ("Requests/sec:  61234.56", "99%    2.31ms", "Non-2xx ... N").
wrk_summary() {
  rps=$(awk '/Requests\/sec/ {print $2}' "$2")
  p50=$(awk '$1=="50%" {print $2}' "$2")
  p99=$(awk '$1=="99%" {print $2}' "$2")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$2")
  echo "{\"name\":\"$1\",\"requests_per_second\":$rps,\"p50\":\"$p50\",\"p99\":\"$p99\",\"non_2xx\":${non2xx:-0}}"
}
