#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The summary of a bench/compare.sh run: medians over the runs of DIR/raw.jsonl into
# DIR/results.json, the table (DIR/table.txt, also printed) with issue 7's targets as ratios
# within this run, and DIR/compare.png (gnuplot).
#   bench/compare_report.sh DIR USERS RUNS
set -euo pipefail
DIR=$1 USERS=$2 RUNS=$3
RAW=$DIR/raw.jsonl
[[ -s "$RAW" ]] || { echo "compare_report.sh: $RAW is empty" >&2; exit 1; }

# Medians over the runs, per measurement (test, system, op, phase, threads, password).
jq -s --arg users "$USERS" --arg runs "$RUNS" --arg uptime "$(cat "$DIR/uptime.txt" 2>/dev/null || uptime)" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" --arg cores "$(nproc)" \
  --arg kernel "$(uname -r)" '
  def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
              else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def key: [.test, .system, (.op // ""), (.phase // ""), (.threads // 1), (.password // "")];
  {
    machine: {cpu: $cpu, cores: ($cores | tonumber), kernel: $kernel, uptime_after: $uptime},
    users: ($users | tonumber), runs: ($runs | tonumber),
    results: (group_by(key) | map(
      (.[0] | {test, system, op, phase, threads, password}) + {
        samples: length,
        ops_s: (map(.ops_s // empty) | median),
        p50_us: (map(.p50_us // empty) | median),
        p99_us: (map(.p99_us // empty) | median),
        errors: (map(.errors // 0) | add),
        daemon_cpu_us_per_op: (map(.daemon_cpu_us_per_op // empty) | median),
        directory_cpu_us_per_op: (map(.directory_cpu_us_per_op // empty) | median),
        client_cpu_us_per_op: (map(.client_cpu_us_per_op // empty) | median),
        rss_kib: (map(.rss_kib // .daemon_rss_kib // empty) | median),
        cached_users: (map(.cached_users // empty) | median)
      } | with_entries(select(.value != null))))
  }' "$RAW" >"$DIR/results.json"

R=$DIR/results.json
# v TEST SYSTEM FIELD [OP PHASE THREADS PASSWORD]: one median
v() {
  jq -r --arg t "$1" --arg s "$2" --arg f "$3" --arg op "${4:-}" --arg ph "${5:-}" --arg th "${6:-}" --arg pw "${7:-}" '
    [.results[] | select(.test == $t and .system == $s and (($op == "") or .op == $op)
      and (($ph == "") or .phase == $ph) and (($th == "") or ((.threads // 1) | tostring) == $th)
      and (($pw == "") or .password == $pw)) | .[$f]] | first // "nan"' "$R"
}
# runs TEST SYSTEM FIELD [OP PHASE THREADS PASSWORD]: {run: value} of each run, from the raw records
runs() {
  jq -s -c --arg t "$1" --arg s "$2" --arg f "$3" --arg op "${4:-}" --arg ph "${5:-}" --arg th "${6:-}" --arg pw "${7:-}" '
    [.[] | select(.test == $t and .system == $s and (($op == "") or .op == $op)
      and (($ph == "") or .phase == $ph) and (($th == "") or ((.threads // 1) | tostring) == $th)
      and (($pw == "") or .password == $pw) and .[$f] != null) | {key: (.run | tostring), value: .[$f]}]
    | from_entries' "$RAW"
}
# spread RUNS_A RUNS_B: the lowest and highest of A/B within one run, "(runs 1.21–1.48)", when
# two or more runs have both: how far the ratio moved between runs on this machine.
spread() {
  jq -n -r --argjson a "$1" --argjson b "$2" '
    [$a | keys[] as $k | select(($b[$k] // 0) != 0) | $a[$k] / $b[$k]]
    | if length < 2 then empty else "\(min) \(max)" end' | awk '{ printf "  (runs %.2f–%.2f)", $1, $2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "nan" || b == "nan") print "nan"; else printf "%.2f", a / b }'; }
verdict() { awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN { if (r == "nan") print "n/a"; else if ((op == ">=" && r >= t) || (op == "<=" && r <= t)) print "met"; else print "MISSED" }'; }

{
  echo "cvat-auth vs nss-pam-ldapd (nslcd) vs SSSD — $USERS users, median of $RUNS run(s)"
  jq -r '"machine: \(.machine.cpu), \(.machine.cores) cores, kernel \(.machine.kernel)\nafter the run: \(.machine.uptime_after)"' "$R"
  echo
  echo "PAM login (pam_authenticate + pam_acct_mgmt through pam_start_confdir); CPU time per login in µs:"
  echo "  daemon = the system's daemon(s), slapd = the directory server, client = the benchmark process"
  echo "  (libpam and the PAM module; for the floors, libldap)"
  printf '%-16s %-6s %3s %10s %10s %10s %9s %9s %9s %8s %6s\n' system passwd thr ops/s p50_ms p99_ms daemon_us slapd_us client_us rss_MiB errors
  jq -r '.results[] | select(.test == "login") | [.system, .password, .threads, .ops_s, .p50_us / 1000, .p99_us / 1000,
      (.daemon_cpu_us_per_op // "-"), (.directory_cpu_us_per_op // "-"), (.client_cpu_us_per_op // "-"),
      (if .rss_kib then .rss_kib / 1024 else "-" end), .errors] | @tsv' "$R" |
    sort -t$'\t' -k3,3n -k2,2 -k1,1 |
    awk -F'\t' 'function us(x) { return x == "-" || x == 0 ? "-" : sprintf("%.0f", x) }
      { printf "%-16s %-6s %3s %10.0f %10.3f %10.3f %9s %9s %9s %8s %6s\n", $1, $2, $3, $4, $5, $6,
      us($7), us($8), us($9), ($10 == "-" ? "-" : sprintf("%.1f", $10)), $11 }'
  echo
  echo "NSS lookups (the module's entry point through dlopen, one thread)"
  printf '%-10s %-11s %-5s %12s %10s %10s %6s\n' system op phase ops/s p50_us p99_us errors
  jq -r '.results[] | select(.test == "nss" and (.system | test("fill") | not)) | [.system, .op, .phase, .ops_s, .p50_us, .p99_us, .errors] | @tsv' "$R" |
    sort -t$'\t' -k2,2 -k3,3 -k1,1 | awk -F'\t' '{ printf "%-10s %-11s %-5s %12.0f %10.2f %10.2f %6s\n", $1, $2, $3, $4, $5, $6, $7 }'
  if jq -e '.results[] | select(.test == "nginx")' "$R" >/dev/null; then
    echo
    echo "nginx Basic auth (ngx_http_auth_pam, wrk -t2 -c8, 100 users' credentials at random;"
    echo "  /min-other: /etc/pam.d/other reduced to pam_deny, which libpam otherwise loads per request)"
    printf '%-16s %10s %10s %10s %8s\n' system req/s p50_ms p99_ms non-2xx
    jq -r '.results[] | select(.test == "nginx") | [.system, .ops_s, .p50_us / 1000, .p99_us / 1000, .errors] | @tsv' "$R" |
      awk -F'\t' '{ printf "%-16s %10.0f %10.3f %10.3f %8s\n", $1, $2, $3, $4, $5 }'
  fi
  echo
  echo "Floors"
  jq -r '.results[] | select(.test == "socket" or (.test == "login" and (.system | startswith("floor")))) |
      [.system, .threads, .ops_s, .p50_us, .p99_us, (.directory_cpu_us_per_op // 0), (.client_cpu_us_per_op // 0)] | @tsv' "$R" |
    awk -F'\t' '{ printf "%-14s t=%-2s %10.0f ops/s  p50 %9.1f us  p99 %9.1f us", $1, $2, $3, $4, $5
      if ($6 > 0) printf "  CPU per op: slapd %.0f us, client %.0f us", $6, $7
      printf "\n" }'
  echo
  echo "Memory (VmRSS after the runs; cvat-authd after caching the users shown)"
  jq -r '.results[] | select(.test == "memory") | "\(.system): \(.rss_kib / 1024 * 10 | floor / 10) MiB\(if .cached_users > 0 then " with \(.cached_users) users cached" else "" end)"' "$R"
  echo
  echo "Targets (issue 7; ratios of the medians; in brackets the lowest and highest ratio within one run)"
  off8=$(v login cvat-cache-off ops_s "" "" 8 right); floor8=$(v login floor ops_s "" "" 8 right)
  nslcd8=$(v login nslcd ops_s "" "" 8 right); off1p50=$(v login cvat-cache-off p50_us "" "" 1 right)
  floor1p50=$(v login floor p50_us "" "" 1 right); on8=$(v login cvat-cache-on ops_s "" "" 8 right)
  r=$(ratio "$off8" "$floor8"); echo "login, cache off, 8 threads ≥ 0.6 × libldap floor:   $r  $(verdict "$r" ">=" 0.6)$(spread "$(runs login cvat-cache-off ops_s "" "" 8 right)" "$(runs login floor ops_s "" "" 8 right)")"
  r=$(ratio "$off8" "$nslcd8"); echo "login, cache off, 8 threads ≥ 3 × nslcd:            $r  $(verdict "$r" ">=" 3)$(spread "$(runs login cvat-cache-off ops_s "" "" 8 right)" "$(runs login nslcd ops_s "" "" 8 right)")"
  r=$(ratio "$off1p50" "$floor1p50"); echo "login, cache off, 1 thread p50 ≤ 2 × floor p50:     $r  $(verdict "$r" "<=" 2)$(spread "$(runs login cvat-cache-off p50_us "" "" 1 right)" "$(runs login floor p50_us "" "" 1 right)")"
  # What the directory's work for one cache-off login allows on this machine, whatever the
  # daemon costs: every core busy in slapd alone; then with libpam alone (floor-pam's client)
  # and the floor's own libldap client (its two operations: less than a login's three) added.
  sl8=$(v login cvat-cache-off directory_cpu_us_per_op "" "" 8 right)
  slf8=$(v login floor directory_cpu_us_per_op "" "" 8 right)
  pamc8=$(v login floor-pam client_cpu_us_per_op "" "" 8 right)
  flc8=$(v login floor client_cpu_us_per_op "" "" 8 right)
  if [[ "$sl8" != nan && "$sl8" != 0 && "$pamc8" != nan && "$flc8" != nan ]]; then
    cores=$(jq -r .machine.cores "$R")
    cap1=$(awk -v c="$cores" -v u="$sl8" 'BEGIN { printf "%.0f", c * 1e6 / u }')
    cap2=$(awk -v c="$cores" -v u="$sl8" -v p="$pamc8" -v l="$flc8" 'BEGIN { printf "%.0f", c * 1e6 / (u + p + l) }')
    echo "  CPU per login at 8 threads: slapd $(printf %.0f "$sl8") µs for a cache-off login, $(printf %.0f "$slf8") µs for the floor's. On"
    echo "  $cores cores that allows at most $cap1/s ($(ratio "$cap1" "$floor8") × floor, $(ratio "$cap1" "$nslcd8") × nslcd) if nothing else ran;"
    echo "  $cap2/s ($(ratio "$cap2" "$floor8") × floor, $(ratio "$cap2" "$nslcd8") × nslcd) with libpam alone ($(printf %.0f "$pamc8") µs) and the floor's own"
    echo "  libldap client ($(printf %.0f "$flc8") µs) added: any daemon's cost comes on top."
  fi
  r=$(ratio "$on8" "$nslcd8"); echo "login, cache on, 8 threads ≥ 20 × nslcd:            $r  $(verdict "$r" ">=" 20)$(spread "$(runs login cvat-cache-on ops_s "" "" 8 right)" "$(runs login nslcd ops_s "" "" 8 right)")"
  pam8=$(v login floor-pam ops_s "" "" 8 right)
  echo "  libpam alone (pam_permit), 8 threads: $(ratio "$pam8" "$nslcd8") × nslcd; cvat cache on: $(ratio "$on8" "$pam8") × libpam alone"
  for op in getpwnam initgroups getgrnam; do
    r=$(ratio "$(v nss cvat p50_us "$op" warm)" "$(v nss sssd p50_us "$op" warm)")
    echo "warm $op p50 ≤ SSSD's (cvat/sssd):                $r  $(verdict "$r" "<=" 1)$(spread "$(runs nss cvat p50_us "$op" warm)" "$(runs nss sssd p50_us "$op" warm)")"
    r=$(ratio "$(v nss cvat p50_us "$op" cold)" "$(v nss nslcd p50_us "$op" cold)")
    echo "cold $op p50 ≤ nslcd's (cvat/nslcd):              $r  $(verdict "$r" "<=" 1)$(spread "$(runs nss cvat p50_us "$op" cold)" "$(runs nss nslcd p50_us "$op" cold)")"
  done
  echo "  getgrnam: cvat's directory groups (the teams, 100 members) against the posixGroups of the same"
  echo "  100 users. cvat-authd never asks the directory for a group (it answers from the users it has"
  echo "  seen): its cold getgrnam is a first lookup from nss.mc, which an LDAP search cannot match."
  echo "  Its role groups (every cached user in the role, thousands): warm p50 $(v nss cvat-roles p50_us getgrnam warm) µs"
  r=$(ratio "$(v nginx cvat ops_s)" "$(v nginx nslcd ops_s)"); echo "nginx req/s ≥ 5 × nslcd's pam_ldap:                 $r  $(verdict "$r" ">=" 5)$(spread "$(runs nginx cvat ops_s)" "$(runs nginx nslcd ops_s)")"
  r=$(ratio "$(v nginx cvat/min-other ops_s)" "$(v nginx nslcd/min-other ops_s)"); echo "  the same, one-line /etc/pam.d/other:               $r  $(verdict "$r" ">=" 5)$(spread "$(runs nginx cvat/min-other ops_s)" "$(runs nginx nslcd/min-other ops_s)")"
  rss=$(v memory cvat rss_kib); r=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
  echo "cvat-authd ≤ 30 MiB with $(v memory cvat cached_users) users cached:           $r MiB  $(verdict "$r" "<=" 30)"
} | tee "$DIR/table.txt"

# --- the chart ------------------------------------------------------------------------------
jq -r '.results[] | select(.test == "login" and .password == "right") | [.system, .threads, .ops_s, .p50_us / 1000] | @tsv' "$R" |
  sort -k1,1 >"$DIR/login.dat"
awk -F'\t' '{ ops[$1, $2] = $3; p50[$1, $2] = $4; s[$1] = 1 }
  END { for (k in s) printf "%s\t%s\t%s\t%s\t%s\n", k, (ops[k, 1] == "" ? 0 : ops[k, 1]), (ops[k, 8] == "" ? 0 : ops[k, 8]),
        (p50[k, 1] == "" ? 0 : p50[k, 1]), (p50[k, 8] == "" ? 0 : p50[k, 8]) }' "$DIR/login.dat" | sort >"$DIR/login2.dat"
jq -r '.results[] | select(.test == "nss" and (.system | test("fill") | not)) | [.system, .op, .phase, .p50_us] | @tsv' "$R" |
  awk -F'\t' '{ v[$2 "-" $3, $1] = $4; ops[$2 "-" $3] = 1 }
    END { for (o in ops) printf "%s\t%s\t%s\t%s\n", o, v[o, "cvat"] + 0, v[o, "nslcd"] + 0, v[o, "sssd"] + 0 }' | sort >"$DIR/nss.dat"
jq -r '.results[] | select(.test == "nginx") | [.system, .ops_s, .p99_us / 1000] | @tsv' "$R" | sort >"$DIR/nginx.dat"
if [[ -s "$DIR/nss.dat" ]]; then
  NSS_PLOT="plot \"$DIR/nss.dat\" using 2:xtic(1) title \"cvat\", \"\" using 3 title \"nslcd\", \"\" using 4 title \"sssd\""
else  # a run of logins only (bench/group_search_cost.sh)
  NSS_PLOT="set title \"NSS: not measured in this run\"; unset logscale y; set yrange [0:1]; unset xtics; plot [0:1] 0 notitle"
fi
if [[ -s "$DIR/nginx.dat" ]]; then
  NGINX_PLOT="plot \"$DIR/nginx.dat\" using 2:xtic(1) title \"req/s\" axes x1y1, \"\" using 0:3 with points pt 7 ps 2 title \"p99 (ms)\" axes x1y2"
else
  NGINX_PLOT="set title \"nginx: not measured (--no-nginx)\"; unset xtics; unset y2tics; unset y2label; plot [0:1] [0:1] 0 notitle"
fi
gnuplot <<EOF
set terminal pngcairo size 1400,1000 font "DejaVu Sans,10"
set output "$DIR/compare.png"
set multiplot layout 2,2 title "cvat-auth vs nslcd vs SSSD: $USERS users, median of $RUNS run(s), one 2-core machine (compare within the chart only)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set xtics rotate by -30 noenhanced
set key top right noenhanced
set title "PAM login throughput (right password)"
set ylabel "logins/s"
set logscale y
plot "$DIR/login2.dat" using 2:xtic(1) title "1 thread", "" using 3 title "8 threads"
set title "PAM login latency p50 (right password)"
set ylabel "ms"
plot "$DIR/login2.dat" using 4:xtic(1) title "1 thread", "" using 5 title "8 threads"
set title "NSS lookup p50"
set yrange [0.05:*]
set ylabel "µs"
$NSS_PLOT
unset logscale y
set yrange [*:*]
set title "nginx Basic auth through ngx_http_auth_pam" noenhanced
set ylabel "requests/s"
set y2label "p99 ms"
set y2tics
$NGINX_PLOT
unset multiplot
EOF
rm -f "$DIR/login.dat" "$DIR/login2.dat" "$DIR/nss.dat" "$DIR/nginx.dat"
echo "wrote $DIR/results.json, $DIR/table.txt, $DIR/compare.png"
