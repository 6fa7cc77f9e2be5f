#!/usr/bin/env bash
# Create or reuse the shoprec virtual environment; print nothing but progress on stderr.
#
# Sourced by run.sh and test.sh (and usable alone: `bash scripts/bootstrap.sh`). After it,
# $SHOPREC_VENV is a venv with the pinned stack (requirements/lock.txt), Horovod 0.28.1
# built from source against TensorFlow 2.15 with Gloo, and this checkout installed in
# editable mode.
#
# The venv lives outside the checkout, at $SHOPREC_CACHE/venv-<key> (default
# ~/.cache/shoprec), where <key> hashes the lock file, the Horovod recipe below and the
# Python version. A fresh clone on a machine that built it before reuses it in seconds;
# changing a pin builds a new one.
#
# It then fetches the pinned JVM set (jvm/spark/pom.xml: Spark's own Delta, Spark's Kafka
# connector) with Maven into $SHOPREC_CACHE/jvm-spark-<key> (key: that pom), once; the
# Spark session factory puts those local files on spark.jars. When Maven or its registry
# cannot be reached, bootstrap says so in one line and the tables use the delta-rs backend.
# Beside it, the same way: a Kafka broker (jvm/kafka/pom.xml, its whole runtime classpath) into
# $SHOPREC_CACHE/jvm-kafka-<key>, $SHOPREC_KAFKA_JARS_DIR, which the Kafka stream tests start
# as their own JVM; without it they skip.
set -euo pipefail

_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_python="${SHOPREC_PYTHON:-python3.11}"
_cache="${SHOPREC_CACHE:-$HOME/.cache/shoprec}"
HOROVOD_VERSION="0.28.1"
HOROVOD_RECIPE="HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1"

_say() { echo "[bootstrap] $*" >&2; }
_die() { echo "[bootstrap] error: $1" >&2; [ -n "${2:-}" ] && echo "  hint: $2" >&2; exit 1; }

_check_tools() {
  command -v "$_python" >/dev/null 2>&1 || _die "$_python was not found" "install Python 3.11 (TensorFlow 2.15 has no wheels for 3.12+) or set SHOPREC_PYTHON"
  local pyver; pyver="$("$_python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [ "$pyver" = "3.11" ] || _die "$_python is Python $pyver, shoprec needs 3.11" "set SHOPREC_PYTHON to a Python 3.11 interpreter"
  command -v java >/dev/null 2>&1 || _die "Java was not found" "install OpenJDK 17 (apt-get install openjdk-17-jre-headless)"
  local jv; jv="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
  [ -n "$jv" ] && [ "$jv" -ge 17 ] || _die "Java ${jv:-?} found, Spark 4 needs Java 17 or newer" "install OpenJDK 17 and put it first on PATH"
}

_key() {
  { cat "$_root/requirements/lock.txt"; echo "$HOROVOD_VERSION $HOROVOD_RECIPE"; "$_python" -c 'import sys; print(sys.version)'; } \
    | sha256sum | cut -c1-16
}

_build() {
  local venv="$1" t0=$SECONDS
  rm -rf "$venv"
  _say "creating $venv (first run on this machine: about 5-10 minutes, most of it the Horovod build)"
  "$_python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade "pip>=24"
  "$venv/bin/pip" install --quiet -r "$_root/requirements/lock.txt"
  # cmake from PyPI (4.x) refuses Horovod's bundled Gloo; the build must see the system one.
  if "$venv/bin/pip" show cmake >/dev/null 2>&1; then "$venv/bin/pip" uninstall --quiet -y cmake; fi
  command -v cmake >/dev/null 2>&1 || _die "cmake is needed to build Horovod" "apt-get install cmake"
  _say "building horovod==$HOROVOD_VERSION from source against TensorFlow (Gloo, CPU)"
  (cd /tmp && env $HOROVOD_RECIPE MAKEFLAGS="-j$(nproc)" \
      "$venv/bin/pip" install --quiet --no-build-isolation --no-cache-dir "horovod==$HOROVOD_VERSION") \
    || _die "the Horovod build failed" "see the compiler output above; STACK.md lists what it needs"
  "$venv/bin/pip" check >&2 || _die "pip check found broken requirements in $venv"
  touch "$venv/.shoprec-ready"
  _say "environment ready in $((SECONDS - t0)) s"
}

_install_checkout() {
  local venv="$1" where
  where="$("$venv/bin/python" -c 'import shoprec, os; print(os.path.dirname(os.path.dirname(os.path.dirname(shoprec.__file__))))' 2>/dev/null || true)"
  if [ "$where" != "$_root" ]; then
    _say "installing this checkout ($_root) into the environment"
    "$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e "$_root" >&2
  fi
}

# The JVM set: copied by Maven into a temp folder, checked, then renamed into place, so a
# half-fetched set is never used. Jars pyspark already ships (by name) are dropped.
_jvm_fetch() {
  local pom="$_root/jvm/spark/pom.xml" key dir tmp pyjars jar base t0=$SECONDS dropped=""
  key="$(sha256sum "$pom" | cut -c1-16)"
  dir="$_cache/jvm-spark-$key"
  if [ ! -f "$dir/.shoprec-ready" ]; then
    if ! command -v mvn >/dev/null 2>&1; then
      _say "Maven (mvn) not found: Spark's Delta JARs not fetched, tables use the delta-rs backend (apt-get install maven to change that)"
      rm -f "$SHOPREC_VENV/shoprec-spark-jars"; return 0
    fi
    _say "fetching the JVM set (jvm/spark/pom.xml) with Maven into $dir"
    tmp="$(mktemp -d "$_cache/.jvm-spark-XXXXXX")"
    if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp/jars" >"$tmp/mvn.log" 2>&1; then
      _say "Maven could not fetch the JVM set ($(grep -m1 -o 'Could not [^:]*' "$tmp/mvn.log" || echo 'see mvn -f jvm/spark/pom.xml dependency:copy-dependencies')): tables use the delta-rs backend"
      rm -rf "$tmp"; rm -f "$SHOPREC_VENV/shoprec-spark-jars"; return 0
    fi
    pyjars="$("$SHOPREC_VENV/bin/python" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
    for jar in "$tmp"/jars/*.jar; do
      base="$(basename "$jar" | sed -E 's/-[0-9][^-]*\.jar$//')"
      if compgen -G "$pyjars/$base-[0-9]*.jar" >/dev/null; then rm "$jar"; dropped="$dropped $base"; fi
    done
    [ -z "$dropped" ] || _say "dropped jars pyspark already ships:$dropped"
    ls "$tmp"/jars/delta-spark_*.jar >/dev/null 2>&1 || _die "the JVM set has no delta-spark jar" "check jvm/spark/pom.xml"
    touch "$tmp/jars/.shoprec-ready"
    rm -rf "$dir"; mv "$tmp/jars" "$dir"; rm -rf "$tmp"
    _say "JVM set ready in $((SECONDS - t0)) s: $(cd "$dir" && ls *.jar | tr '\n' ' ')"
  fi
  # Sessions started from this environment (notebooks, spark-submit wrappers, tests) find it here.
  echo "$dir" > "$SHOPREC_VENV/shoprec-spark-jars"
  export SHOPREC_SPARK_JARS_DIR="$dir"
}

# The Kafka broker the stream's Kafka tests start (java -cp "<dir>/*" kafka.Kafka): fetched,
# checked and renamed into place like the JVM set, nothing dropped (it runs in its own JVM).
_kafka_fetch() {
  local pom="$_root/jvm/kafka/pom.xml" key dir tmp t0=$SECONDS
  key="$(sha256sum "$pom" | cut -c1-16)"
  dir="$_cache/jvm-kafka-$key"
  if [ ! -f "$dir/.shoprec-ready" ]; then
    if ! command -v mvn >/dev/null 2>&1; then
      _say "Maven (mvn) not found: no Kafka broker fetched, the Kafka stream tests skip (apt-get install maven to change that)"
      rm -f "$SHOPREC_VENV/shoprec-kafka-jars"; return 0
    fi
    _say "fetching the Kafka broker (jvm/kafka/pom.xml) with Maven into $dir"
    tmp="$(mktemp -d "$_cache/.jvm-kafka-XXXXXX")"
    if ! mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp/jars" >"$tmp/mvn.log" 2>&1; then
      _say "Maven could not fetch the Kafka broker ($(grep -m1 -o 'Could not [^:]*' "$tmp/mvn.log" || echo 'see mvn -f jvm/kafka/pom.xml dependency:copy-dependencies')): the Kafka stream tests skip"
      rm -rf "$tmp"; rm -f "$SHOPREC_VENV/shoprec-kafka-jars"; return 0
    fi
    ls "$tmp"/jars/kafka_2.13-*.jar >/dev/null 2>&1 || _die "the Kafka broker set has no kafka_2.13 jar" "check jvm/kafka/pom.xml"
    touch "$tmp/jars/.shoprec-ready"
    rm -rf "$dir"; mv "$tmp/jars" "$dir"; rm -rf "$tmp"
    _say "Kafka broker ready in $((SECONDS - t0)) s: $(cd "$dir" && ls *.jar | wc -l) jars, $(du -sh "$dir" | cut -f1)"
  fi
  echo "$dir" > "$SHOPREC_VENV/shoprec-kafka-jars"
  export SHOPREC_KAFKA_JARS_DIR="$dir"
}

_check_tools
mkdir -p "$_cache"
SHOPREC_VENV="$_cache/venv-$(_key)"
if [ ! -f "$SHOPREC_VENV/.shoprec-ready" ]; then
  exec 9>"$_cache/.build.lock"
  flock 9
  [ -f "$SHOPREC_VENV/.shoprec-ready" ] || _build "$SHOPREC_VENV"
  flock -u 9
fi
_install_checkout "$SHOPREC_VENV"
exec 9>"$_cache/.jvm.lock"; flock 9; _jvm_fetch; _kafka_fetch; flock -u 9
export SHOPREC_VENV
export PATH="$SHOPREC_VENV/bin:$PATH"
# Spark's Python workers must use the same interpreter as the driver.
export PYSPARK_PYTHON="$SHOPREC_VENV/bin/python"
export PYSPARK_DRIVER_PYTHON="$SHOPREC_VENV/bin/python"
