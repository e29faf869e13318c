#!/usr/bin/env bash
# Build and test ringmaster: what `.ci/run` calls, and README command 2.
#
#   1. scripts/install-deps.sh (no network work when everything is present)
#   2. .venv-test from /usr/bin/python3 with tests/requirements.txt (pinned)
#      and .venv-apps (Flask, Django, FastAPI: tests/requirements-apps*.txt) per
#      interpreter; one that does not install counts as a failure
#   3. for each build dir, "build" (normal) then "build-asan"
#      (-DRINGMASTER_SANITIZE=ON): configure + build, ctest, pytest tests/integration;
#      then "build-tsan" (-DRINGMASTER_TSAN=ON): the shared-memory suites under
#      ThreadSanitizer (ctest only: TSan cannot follow an embedded interpreter)
#   4. the worker modes (docs/modes.md): every pytest run above is in gil mode
#      (the default worker embeds /usr/bin/python3, 3.11). Each build that is
#      neither ASan nor TSan also gets a worker per extra interpreter
#      (-DRINGMASTER_EXTRA_PYTHONS) and runs tests/integration again per mode,
#      with --threads 2:
#        subinterpreters  pyenv's newest CPython 3.13 (ringmaster-worker-3.13)
#        free-threaded    python3.13t, built once by scripts/build-python-ft.sh
#                         (about 4 minutes, then cached) (ringmaster-worker-3.13t)
#      A mode whose interpreter cannot be found or built counts as 1 failure.
#   5. tests/deploy once (tests/deploy/run.sh): the container image, compose,
#      Kubernetes manifests and systemd units; it starts dockerd if needed
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
#   RINGMASTER_TEST_MODES    worker modes, default "gil subinterpreters free-threaded"
#   RINGMASTER_PYTEST_ARGS   extra pytest arguments, e.g. "-k keepalive -x"
#   RINGMASTER_TEST_DEPLOY   0 leaves out tests/deploy (containers, compose, k8s,
#                            systemd), default 1
#   RINGMASTER_TEST_FUZZ_SECONDS  libFuzzer run on the HTTP parser in build-fuzz
#                            (clang), default 30; 0 leaves it out
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
VENV=$ROOT/.venv-test
BUILDS=${RINGMASTER_TEST_BUILDS:-build build-asan build-tsan}
MODES=${RINGMASTER_TEST_MODES:-gil subinterpreters free-threaded}

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
        # A test skipped because something it needs is not installed (the
        # framework suites say "missing dependency: ...") did not pass: it fails.
        why = " ".join((e.get("message") or "") + " " + (e.text or "")
                       for e in case.findall("skipped"))
        if kind == "pytest" and skip and "missing dependency" in why:
            failed += 1
        elif skip:
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

# pytest_suite BUILD MODE PYTHON_TAG THREADS: tests/integration once against
# BUILD with that worker mode; appends a result line to $REPORTS/results.
pytest_suite() {
  local build=$1 mode=$2 python=$3 threads=$4 label junit rc p f s
  label="$build: pytest"
  [[ $mode != gil ]] && label="$build [$mode, Python $python]: pytest"
  banner "$label tests/integration"
  if [[ $venv_ok != 1 ]]; then
    echo "$label|0|1|0|not run (no venv)" >>"$REPORTS/results"
    return
  fi
  junit=$REPORTS/${build//\//_}-$mode-pytest.xml
  # The HTTP details that the worker frames (HEAD, OPTIONS * per interface)
  # run in every mode; the rest of tests/http tests the supervisor alone and
  # runs once (pytest_http).
  local extra=""
  [[ $mode != gil ]] && extra=tests/http/test_http11_details.py
  # shellcheck disable=SC2086
  RINGMASTER_BUILD=$build RINGMASTER_TEST_MODE=$mode RINGMASTER_TEST_PYTHON=$python \
    RINGMASTER_TEST_THREADS=$threads "$VENV/bin/python" -m pytest tests/integration $extra \
    -p no:cacheprovider -o junit_family=xunit2 --junitxml="$junit" \
    --timeout=300 -rfEs ${RINGMASTER_PYTEST_ARGS:-}
  rc=$?
  if [[ -s $junit ]] && read -r p f s < <(junit_counts pytest "$junit") && [[ -n ${s:-} ]]; then
    # exit 5 = no tests collected: that is a failure of the suite here.
    [[ $rc != 0 && $f == 0 ]] && f=1
    echo "$label|$p|$f|$s|rc=$rc" >>"$REPORTS/results"
  else
    echo "$label|0|1|0|rc=$rc, no report" >>"$REPORTS/results"
  fi
}

# pytest_http BUILD: tests/http (the HTTP/1.1 corpus, slow clients) once
# against BUILD in the default worker mode: it tests the supervisor's HTTP,
# which does not depend on the mode.
pytest_http() {
  local build=$1 label="$build: pytest tests/http" junit rc p f s
  banner "$label"
  if [[ $venv_ok != 1 ]]; then
    echo "$label|0|1|0|not run (no venv)" >>"$REPORTS/results"
    return
  fi
  junit=$REPORTS/${build//\//_}-http-pytest.xml
  # shellcheck disable=SC2086
  RINGMASTER_BUILD=$build "$VENV/bin/python" -m pytest tests/http -p no:cacheprovider \
    -o junit_family=xunit2 --junitxml="$junit" --timeout=300 -rfEs ${RINGMASTER_PYTEST_ARGS:-}
  rc=$?
  if [[ -s $junit ]] && read -r p f s < <(junit_counts pytest "$junit") && [[ -n ${s:-} ]]; then
    [[ $rc != 0 && $f == 0 ]] && f=1
    echo "$label|$p|$f|$s|rc=$rc" >>"$REPORTS/results"
  else
    echo "$label|0|1|0|rc=$rc, no report" >>"$REPORTS/results"
  fi
}

# ---------------------------------------------------------------- interpreters per mode
# The worker tag of an interpreter: "3.13", or "3.13t" when free-threaded.
python_tag() {
  "$1" -c 'import sys, sysconfig
ft = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
print("%d.%d%s" % (sys.version_info[0], sys.version_info[1], ft))'
}

declare -A mode_tag=()
extra_pythons=()
for mode in $MODES; do
  py=""
  case $mode in
    gil) continue ;;
    subinterpreters)
      # The newest pyenv 3.13.x with a GIL (a "3.13.xt" build is free-threaded).
      for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13.*/bin/python3.13; do
        [[ -x $cand && $(python_tag "$cand" 2>/dev/null) == 3.13 ]] && py=$cand
      done
      why="no CPython 3.13 in ${PYENV_ROOT:-$HOME/.pyenv}/versions"
      ;;
    free-threaded)
      banner "python3.13t for free-threaded mode (scripts/build-python-ft.sh)"
      py=$(./scripts/build-python-ft.sh | tail -n1) || py=""
      why="scripts/build-python-ft.sh failed"
      ;;
    *)
      why="unknown mode (gil, subinterpreters, free-threaded)"
      ;;
  esac
  if [[ -n $py && -x $py ]]; then
    mode_tag[$mode]=$(python_tag "$py")
    extra_pythons+=("$py")
    echo "test.sh: $mode mode with $py (ringmaster-worker-${mode_tag[$mode]})"
  else
    record "mode $mode" 0 1 0 "FAILED ($why)"
  fi
done
extras=$(IFS=';'; echo "${extra_pythons[*]}")

# ---------------------------------------------------------------- framework venvs
# Flask and Django for tests/integration/test_wsgi_frameworks.py, pinned in
# tests/requirements-apps.txt, and FastAPI (tests/requirements-apps-native.txt,
# binary wheels only) for test_asgi_frameworks.py, in a venv per interpreter a
# worker embeds (the worker refuses a venv of another Python): .venv-apps from
# /usr/bin/python3, .venv-apps-TAG from each mode's interpreter. A venv that
# cannot be made counts as 1 failure, and the framework tests then fail rather
# than skip (RINGMASTER_REQUIRE_APPS_VENV): a suite skipped for a missing
# dependency is not a pass. uvloop (tests/requirements-apps-uvloop.txt) is the
# one optional piece: where it has no wheel (3.13t) the venv is marked
# .uvloop-unavailable with pip's reason, the worker runs asyncio, and the
# summary says so as a skip with that reason.
apps_venv_uvloop() {
  local dir=$1 out
  rm -f "$dir/.uvloop-unavailable"
  if ! out=$("$dir/bin/python" -m pip install -q --disable-pip-version-check \
      --only-binary uvloop -r tests/requirements-apps-uvloop.txt 2>&1); then
    echo "uvloop does not install from a wheel here: $(tail -n1 <<<"$out")" \
      >"$dir/.uvloop-unavailable"
    echo "note: $(cat "$dir/.uvloop-unavailable") (in $dir)"
  fi
  return 0
}

apps_venv() {
  local py=$1 dir=$2 stamp want
  want=$( (sha256sum tests/requirements-apps.txt tests/requirements-apps-native.txt \
             tests/requirements-apps-uvloop.txt
           "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)
  stamp=$dir/.requirements.sha256
  [[ -x $dir/bin/python && "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && return 0
  banner "framework venv $dir from $py"
  rm -rf "$dir"
  "$py" -m venv "$dir" &&
    "$dir/bin/python" -m pip install -q --disable-pip-version-check \
      -r tests/requirements-apps.txt &&
    "$dir/bin/python" -m pip install -q --disable-pip-version-check \
      --only-binary pydantic_core -r tests/requirements-apps-native.txt &&
    apps_venv_uvloop "$dir" &&
    echo "$want" >"$stamp"
}

# apps_venv_record PY DIR: make the venv; a failure counts, a venv without
# uvloop is one stated skip.
apps_venv_record() {
  local name=venv\ ${2#"$ROOT"/}
  if ! apps_venv "$1" "$2"; then
    record "$name" 0 1 0 "FAILED (pip install: the framework tests fail too)"
  elif [[ -f $2/.uvloop-unavailable ]]; then
    record "$name: uvloop" 0 0 1 "skipped on purpose: $(cat "$2/.uvloop-unavailable"); asyncio runs"
  fi
}
export RINGMASTER_REQUIRE_APPS_VENV=1
apps_venv_record "$PY" "$ROOT/.venv-apps"
for py in "${extra_pythons[@]}"; do
  apps_venv_record "$py" "$ROOT/.venv-apps-$(python_tag "$py")"
done

# ---------------------------------------------------------------- per build
for build in $BUILDS; do
  case $build in
    *asan*) extra=(-DRINGMASTER_SANITIZE=ON -DRINGMASTER_TSAN=OFF) ;;
    *tsan*) extra=(-DRINGMASTER_SANITIZE=OFF -DRINGMASTER_TSAN=ON) ;;
    *) extra=(-DRINGMASTER_SANITIZE=OFF -DRINGMASTER_TSAN=OFF) ;;
  esac
  # Workers for the other modes' interpreters: in plain builds only.
  if [[ $build == *asan* || $build == *tsan* ]]; then
    extra+=(-DRINGMASTER_EXTRA_PYTHONS=)
  else
    extra+=("-DRINGMASTER_EXTRA_PYTHONS=$extras")
  fi

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
    if [[ " $MODES " == *" gil "* ]]; then
      pytest_suite "$build" gil "" ""
    fi
    pytest_http "$build"
    [[ $build == *asan* ]] && exit 0
    for mode in $MODES; do
      [[ $mode == gil || -z ${mode_tag[$mode]:-} ]] && continue
      pytest_suite "$build" "$mode" "${mode_tag[$mode]}" 2
    done
  )
  if [[ -f $REPORTS/results ]]; then
    while IFS='|' read -r name p f s note; do
      record "$name" "$p" "$f" "$s" "$note"
    done <"$REPORTS/results"
    rm -f "$REPORTS/results"
  fi
done

# ---------------------------------------------------------------- deployment
# tests/deploy once, not per build (tests/deploy/run.sh): the image from
# deploy/Dockerfile built on a debootstrapped base and run (--cpus 1, health,
# docker stop), deploy/compose.yaml with two replicas behind HAProxy under
# load, deploy/k8s validated offline, deploy/systemd verified. run.sh starts
# dockerd when none runs. About 3 minutes on a fresh machine (the base image
# and the image's build stage), well under one once Docker has them cached.
if [[ ${RINGMASTER_TEST_DEPLOY:-1} != 0 ]]; then
  label="deploy: pytest tests/deploy"
  banner "$label"
  if [[ $venv_ok != 1 ]]; then
    record "$label" 0 1 0 "not run (no venv)"
  else
    junit=$REPORTS/deploy-pytest.xml
    # shellcheck disable=SC2086
    RINGMASTER_BUILD=build RINGMASTER_DEPLOY_PYTHON="$VENV/bin/python" tests/deploy/run.sh \
      -o junit_family=xunit2 --junitxml="$junit" --timeout=900 -rfEs ${RINGMASTER_PYTEST_ARGS:-}
    rc=$?
    if [[ -s $junit ]] && read -r p f s < <(junit_counts pytest "$junit") && [[ -n ${s:-} ]]; then
      [[ $rc != 0 && $f == 0 ]] && f=1
      record "$label" "$p" "$f" "$s" "rc=$rc"
    else
      record "$label" 0 1 0 "rc=$rc, no report"
    fi
  fi
fi

# ---------------------------------------------------------------- fuzzing
# build-fuzz, configured with clang: libFuzzer on the HTTP parser
# (tests/fuzz/fuzz_http_parse.c) for RINGMASTER_TEST_FUZZ_SECONDS from the
# seeds in tests/fuzz/corpus, as the ctest "fuzz_http_parse". It counts as one
# test case; without clang it is skipped (the seeds are still replayed under
# ASan by the ctest "fuzz_replay" of every build above).
FUZZ_SECONDS=${RINGMASTER_TEST_FUZZ_SECONDS:-30}
if [[ $FUZZ_SECONDS != 0 ]]; then
  banner "build-fuzz: libFuzzer on the HTTP parser, $FUZZ_SECONDS s"
  if ! command -v clang >/dev/null; then
    record "build-fuzz: fuzz" 0 0 1 "skipped (clang not installed)"
  elif ! CC=clang cmake -S . -B build-fuzz -DRINGMASTER_PYTHON="$PY" -DRINGMASTER_FUZZ=ON \
         -DRINGMASTER_FUZZ_SECONDS="$FUZZ_SECONDS" -DRINGMASTER_EXTRA_PYTHONS= >/dev/null \
       || ! cmake --build build-fuzz --target fuzz_http_parse -j"$(nproc)"; then
    record "build-fuzz: build" 0 1 0 "FAILED (fuzz target not built)"
  elif (cd build-fuzz && ctest -R '^fuzz_http_parse$' --output-on-failure); then
    record "build-fuzz: fuzz" 1 0 0 ""
  else
    record "build-fuzz: fuzz" 0 1 0 "FAILED (inputs in build-fuzz/tests/fuzz/crash-*)"
  fi
fi

# ---------------------------------------------------------------- summary
banner "summary ($((SECONDS - started)) s; counts are test cases)"
for line in "${summary[@]}"; do
  echo "$line"
done
echo "total: $total_passed passed, $total_failed failed, $total_skipped skipped"
echo "$total_passed passed, $total_failed failed"
[[ $total_failed == 0 ]]
