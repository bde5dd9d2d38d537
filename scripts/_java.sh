# Sourced by the scripts that build from Maven Central: Java 17+ and mvn on
# PATH, installed from Debian's packages when missing and running as root.
need_java_tools() {
  if command -v java >/dev/null && command -v mvn >/dev/null; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
  else
    echo "need java (17+) and mvn on PATH" >&2; exit 1
  fi
}

# Build a tools/ Maven project into OUT unless OUT is newer than its pom.
# Quiet unless it fails: the log stays in OUT.log.
mvn_package() {
  local pom="$1" out="$2"
  if [ -f "$out/.built" ] && [ "$out/.built" -nt "$pom" ]; then return; fi
  need_java_tools
  mkdir -p "$out"
  echo "building $(dirname "$pom") into $out (mvn, first run downloads from Maven Central)" >&2
  if ! mvn -B -q -f "$pom" package -Dout="$(cd "$out" && pwd)" >"$out.log" 2>&1; then
    tail -30 "$out.log" >&2; echo "mvn failed; see $out.log" >&2; exit 1
  fi
  touch "$out/.built"
}
