#!/usr/bin/env bash
# Build and test ringmaster: what `.ci/run` calls, and README command 2.
#
#   1. scripts/install-deps.sh (no network work when everything is present)
#   2. .venv-test from /usr/bin/python3 with tests/requirements.txt (pinned)
#   3. for each build dir, "build" (normal) then "build-asan"
#      (-DRINGMASTER_SANITIZE=ON): configure + build, ctest, pytest tests/integration;
#      then "build-tsan" (-DRINGMASTER_TSAN=ON): the shared-memory suites under
#      ThreadSanitizer (ctest only: TSan cannot follow an embedded interpreter)
#
# Every step runs even when an earlier one failed; the script then prints a
# summary and exits non-zero if anything failed. Its last line is
#   N passed, N failed
# counting test cases: pytest cases, plus for ctest the Criterion cases of each
# test binary (read from its "Synthesis:" line) or, for a ctest test without a
# Criterion synthesis, 1 per ctest test. A build that fails counts as 1 failed
# case, and so does a test runner that produced no report at all.
#
# Knobs (environment):
#   RINGMASTER_TEST_BUILDS   build dirs to run, default "build build-asan build-tsan"
#   RINGMASTER_PYTEST_ARGS   extra pytest arguments, e.g. "-k keepalive -x"
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
VENV=$ROOT/.venv-test
BUILDS=${RINGMASTER_TEST_BUILDS:-build build-asan build-tsan}

REPORTS=$(mktemp -d "${TMPDIR:-/tmp}/ringmaster-test.XXXXXX")
trap 'rm -rf "$REPORTS"' EXIT

total_passed=0
total_failed=0
total_skipped=0
summary=()
started=$SECONDS

banner() { printf '\n===== %s =====\n' "$*"; }

# record NAME PASSED FAILED SKIPPED NOTE
record() {
  total_passed=$((total_passed + $2))
  total_failed=$((total_failed + $3))
  total_skipped=$((total_skipped + $4))
  summary+=("$(printf '%-28s %5d passed %5d failed %5d skipped  %s' "$1" "$2" "$3" "$4" "$5")")
}

# junit_counts KIND FILE -> "passed failed skipped" on stdout (KIND: ctest|pytest)
junit_counts() {
  "$PY" - "$1" "$2" <<'PYEOF'
import re, sys, xml.etree.ElementTree as ET

kind, path = sys.argv[1], sys.argv[2]
root = ET.parse(path).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
passed = failed = skipped = 0
synth = re.compile(r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)")
ansi = re.compile(r"\x1b\[[0-9;]*m")
for suite in suites:
    for case in suite.iter("testcase"):
        bad = case.find("failure") is not None or case.find("error") is not None
        skip = case.find("skipped") is not None or case.get("status") in ("notrun", "disabled")
        if kind == "ctest":
            bad = bad or case.get("status") == "fail"
            out = ansi.sub("", case.findtext("system-out") or "")
            m = synth.findall(out)
            if m and not skip:
                _, ok, fail, crash = map(int, m[-1])
                nbad = fail + crash
                # A binary that failed after its tests passed (a sanitizer
                # report at exit, say) still counts as one failure.
                if bad and nbad == 0:
                    nbad = 1
                passed += ok
                failed += nbad
                continue
        if skip:
            skipped += 1
        elif bad:
            failed += 1
        else:
            passed += 1
print(passed, failed, skipped)
PYEOF
}

# kill_strays BUILD_DIR: when ctest times a test out it kills the test binary
# only; peers the test forked can go on spinning and skew every later suite.
# After ctest, kill (by pid) every process running a test_* binary from
# BUILD_DIR that no running ctest is an ancestor of, and say so.
kill_strays() {
  "$PY" - "$1" <<'PYEOF'
import os, signal, sys

build = os.path.realpath(sys.argv[1]) + os.sep

def exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""

def parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        return int(data[data.rindex(")") + 2:].split()[1])
    except (OSError, ValueError):
        return 0

def under_ctest(pid):
    for _ in range(64):
        pid = parent(pid)
        if pid <= 1:
            return False
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "ctest":
                    return True
        except OSError:
            return False
    return False

for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    pid = int(entry)
    path = exe(pid)
    # Test binaries only: never a ringmaster someone is running from this build.
    if (path.startswith(build) and os.path.basename(path).startswith("test_")
            and not under_ctest(pid)):
        print(f"test.sh: killing stray process {pid} ({path}, left behind by a test)")
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
PYEOF
}

# ---------------------------------------------------------------- deps, venv
banner "install-deps"
if ! ./scripts/install-deps.sh; then
  record "install-deps" 0 1 0 "FAILED"
fi

banner "venv $VENV"
venv_ok=1
if [[ ! -x $VENV/bin/python ]] || ! grep -qx 'home = /usr/bin' "$VENV/pyvenv.cfg" 2>/dev/null \
   || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" || venv_ok=0
fi
stamp=$VENV/.requirements.sha256
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [[ $venv_ok == 1 && "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  if "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt; then
    echo "$want" >"$stamp"
  else
    venv_ok=0
  fi
fi
if [[ $venv_ok == 1 ]]; then
  "$VENV/bin/python" -m pytest --version
else
  record "venv" 0 1 0 "FAILED (pytest unavailable)"
fi

# ---------------------------------------------------------------- per build
for build in $BUILDS; do
  case $build in
    *asan*) extra=(-DRINGMASTER_SANITIZE=ON -DRINGMASTER_TSAN=OFF) ;;
    *tsan*) extra=(-DRINGMASTER_SANITIZE=OFF -DRINGMASTER_TSAN=ON) ;;
    *) extra=(-DRINGMASTER_SANITIZE=OFF -DRINGMASTER_TSAN=OFF) ;;
  esac

  banner "$build: configure + build ${extra[*]}"
  if ! ./scripts/build.sh "$build" "${extra[@]}"; then
    record "$build: build" 0 1 0 "FAILED (ctest and pytest not run)"
    continue
  fi

  (
    if [[ $build == *asan* ]]; then
      export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
      export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    fi

    tag=${build//\//_}
    banner "$build: ctest"
    junit=$REPORTS/$tag-ctest.xml
    # Large output limits: ctest otherwise cuts a passing test's output to 1 KiB
    # in the report, and with it Criterion's closing Synthesis line.
    (cd "$build" && ctest --output-on-failure --timeout 300 \
       --test-output-size-passed 1048576 --test-output-size-failed 4194304 \
       --output-junit "$junit")
    rc=$?
    kill_strays "$build"
    if [[ -s $junit ]] && read -r p f s < <(junit_counts ctest "$junit") && [[ -n ${s:-} ]]; then
      [[ $rc != 0 && $f == 0 ]] && f=1
      echo "$build: ctest|$p|$f|$s|rc=$rc" >>"$REPORTS/results"
    else
      echo "$build: ctest|0|1|0|rc=$rc, no report" >>"$REPORTS/results"
    fi

    [[ $build == *tsan* ]] && exit 0
    banner "$build: pytest tests/integration"
    if [[ $venv_ok != 1 ]]; then
      echo "$build: pytest|0|1|0|not run (no venv)" >>"$REPORTS/results"
      exit 0
    fi
    junit=$REPORTS/$tag-pytest.xml
    # shellcheck disable=SC2086
    RINGMASTER_BUILD=$build "$VENV/bin/python" -m pytest tests/integration \
      -p no:cacheprovider -o junit_family=xunit2 --junitxml="$junit" \
      --timeout=300 -rfEs ${RINGMASTER_PYTEST_ARGS:-}
    rc=$?
    if [[ -s $junit ]] && read -r p f s < <(junit_counts pytest "$junit") && [[ -n ${s:-} ]]; then
      # exit 5 = no tests collected: that is a failure of the suite here.
      [[ $rc != 0 && $f == 0 ]] && f=1
      echo "$build: pytest|$p|$f|$s|rc=$rc" >>"$REPORTS/results"
    else
      echo "$build: pytest|0|1|0|rc=$rc, no report" >>"$REPORTS/results"
    fi
  )
  if [[ -f $REPORTS/results ]]; then
    while IFS='|' read -r name p f s note; do
      record "$name" "$p" "$f" "$s" "$note"
    done <"$REPORTS/results"
    rm -f "$REPORTS/results"
  fi
done

# ---------------------------------------------------------------- summary
banner "summary ($((SECONDS - started)) s; counts are test cases)"
for line in "${summary[@]}"; do
  echo "$line"
done
echo "total: $total_passed passed, $total_failed failed, $total_skipped skipped"
echo "$total_passed passed, $total_failed failed"
[[ $total_failed == 0 ]]
