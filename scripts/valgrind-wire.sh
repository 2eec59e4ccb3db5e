#!/usr/bin/env bash
# Leak check of the CondenseWire service-message wrappers (protobuf-c bridging) under valgrind.
# Builds a throwaway package holding only CCondenseProtos, CondenseWire and the exerciser
# scripts/valgrind-wire/main.swift (with the generated test samples), so the check does not
# depend on the rest of the package compiling. Fails on memory errors and "definitely lost"
# leaks; prints valgrind's leak summary.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${WIRE_VALGRIND_DIR:-$root/.build-valgrind-wire}
pkg=$work/pkg

mkdir -p "$pkg/Sources/WireLeakCheck"
ln -sfn "$root/Sources/CCondenseProtos" "$pkg/Sources/CCondenseProtos"
ln -sfn "$root/Sources/CondenseWire" "$pkg/Sources/CondenseWire"
ln -sfn "$root/scripts/valgrind-wire/main.swift" "$pkg/Sources/WireLeakCheck/main.swift"
ln -sfn "$root/Tests/CondenseWireTests/WireSamples.swift" "$pkg/Sources/WireLeakCheck/WireSamples.swift"
cat > "$pkg/Package.swift" <<'SWIFT'
// swift-tools-version: 6.1
import PackageDescription
let package = Package(
    name: "WireLeakCheck",
    targets: [
        .target(name: "CCondenseProtos", linkerSettings: [.linkedLibrary("protobuf-c")]),
        .target(name: "CondenseWire", dependencies: ["CCondenseProtos"]),
        .executableTarget(name: "WireLeakCheck", dependencies: ["CondenseWire"]),
    ],
    swiftLanguageModes: [.v6]
)
SWIFT

# Debug build: WireSamples.swift uses @testable import. Valgrind 3.19 cannot read the
# toolchain's DWARF 5 debug info, so it runs a copy without it.
swift build --package-path "$pkg" --scratch-path "$work/build" --product WireLeakCheck
binary=$(swift build --package-path "$pkg" --scratch-path "$work/build" --show-bin-path)/WireLeakCheck
objcopy --strip-debug "$binary" "$work/WireLeakCheck.nodebug"

valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 \
  "$work/WireLeakCheck.nodebug" 2>&1 | tee "$work/valgrind.log"
status=${PIPESTATUS[0]}
grep -E "samples:|definitely lost|ERROR SUMMARY|All heap blocks were freed" "$work/valgrind.log" | sed 's/^==[0-9]*== //'
exit "$status"
