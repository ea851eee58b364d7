// swift-tools-version:6.1
// Microbenchmarks for MeshCore, MeshSimulation and MeshWire (ordo-one/benchmark).
// A package of its own so that the benchmark package and its dependencies are resolved and
// built only here. Run from this directory:
//   swift package --disable-sandbox benchmark
import PackageDescription

let package = Package(
    name: "MeshMicroBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(name: "mesh", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "MeshCoreBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "MeshCore", package: "mesh"),
                .product(name: "MeshSimulation", package: "mesh"),
                .product(name: "MeshWire", package: "mesh"),
            ],
            path: "Benchmarks/MeshCoreBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
