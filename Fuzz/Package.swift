// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets (DESIGN.md §8): wire decoding, ClusterState.apply and plan parsing. A package
// of its own so that the root package's build and tests never need -sanitize=fuzzer; `Fuzz/run`
// builds it with the flags libFuzzer needs and runs each target from its committed corpus.
let package = Package(
    name: "mesh-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "mesh", path: "..")],
    targets: [
        // libFuzzer's driver, called from each target's entry point.
        .target(name: "FuzzDriver"),
        .executableTarget(name: "fuzz-wire", dependencies: ["FuzzDriver", .product(name: "MeshFuzzing", package: "mesh")]),
        .executableTarget(name: "fuzz-apply", dependencies: ["FuzzDriver", .product(name: "MeshFuzzing", package: "mesh")]),
        .executableTarget(name: "fuzz-plan", dependencies: ["FuzzDriver", .product(name: "MeshFuzzing", package: "mesh")]),
    ],
    swiftLanguageModes: [.v6]
)
