// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "mesh",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mesh", targets: ["mesh"]),
        // For the microbenchmarks (Benchmarks/Micro, a package of its own so that ordo-one/benchmark
        // and its dependencies are built only when they run).
        .library(name: "MeshCore", targets: ["MeshCore"]),
        .library(name: "MeshSimulation", targets: ["MeshSimulation"]),
        .library(name: "MeshWire", targets: ["MeshWire"]),
        // For the libFuzzer targets (Fuzz/, a package of its own built with -sanitize=fuzzer).
        .library(name: "MeshFuzzing", targets: ["MeshFuzzing"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // No pkgConfig: Debian's libzmq.pc adds -isystem flags for Kerberos that SwiftPM refuses
        // with a warning; the header and library are in the default paths (apt: libzmq3-dev).
        .systemLibrary(name: "CZeroMQ"),
        .systemLibrary(name: "CSodium"),
        .target(name: "CMeshSystem"),
        // Pure state machines: no Foundation, no clock, no threads, no I/O.
        .target(name: "MeshCore"),
        .target(name: "MeshSimulation", dependencies: ["MeshCore"]),
        // Plans and matrices (DESIGN.md §7): YAML in, jobs out; no I/O.
        .target(name: "MeshPlan", dependencies: ["MeshCore", .product(name: "Yams", package: "Yams")]),
        .target(
            name: "MeshTransport",
            dependencies: [
                "MeshCore",
                "CZeroMQ",
                "CSodium",
                "CMeshSystem",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "MeshWire",
            dependencies: ["MeshCore", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // The fuzz targets' bodies and their byte-driven generators: libFuzzer (Fuzz/) and the
        // property tests run the same code.
        .target(name: "MeshFuzzing", dependencies: ["MeshCore", "MeshWire", "MeshPlan"]),
        .target(
            name: "MeshAgent",
            dependencies: [
                "MeshCore",
                "MeshTransport",
                "MeshWire",
                "CMeshSystem",
                "CSodium",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .target(
            name: "MeshCLI",
            dependencies: [
                "MeshAgent",
                "MeshPlan",
                "MeshTransport",
                "MeshWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "mesh", dependencies: ["MeshCLI", "CMeshSystem"]),
        .executableTarget(
            name: "TransportBenchmark",
            dependencies: ["MeshTransport", "CZeroMQ"],
            path: "Benchmarks/TransportBenchmark"
        ),
        .target(name: "MeshTestSupport", path: "Tests/MeshTestSupport"),
        .testTarget(name: "MeshTransportTests", dependencies: ["MeshTransport", "CZeroMQ", "MeshTestSupport"]),
        .target(name: "BenchSupport", dependencies: ["MeshAgent", "MeshCore", "MeshTransport", "MeshWire"], path: "Benchmarks/BenchSupport"),
        .executableTarget(
            name: "ClusterBenchmark",
            dependencies: ["BenchSupport", "MeshCore", "MeshSimulation", "MeshAgent", "MeshTransport", "MeshWire"],
            path: "Benchmarks/ClusterBenchmark"
        ),
        // mesh next to Slurm, etcd and GNU parallel (Benchmarks/run starts it in a namespace).
        .executableTarget(
            name: "PeerBenchmark",
            dependencies: [
                "BenchSupport", "MeshAgent", "MeshCore", "MeshWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/PeerBenchmark"
        ),
        .executableTarget(
            name: "mesh-chaos",
            dependencies: [
                "MeshAgent", "MeshCore", "MeshTransport", "MeshWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/MeshChaos"
        ),
        .executableTarget(
            name: "MeshSimulator",
            dependencies: ["MeshCore", "MeshSimulation"],
            path: "Benchmarks/MeshSimulator"
        ),
        .testTarget(name: "MeshCoreTests", dependencies: ["MeshCore"]),
        .testTarget(name: "MeshPlanTests", dependencies: ["MeshPlan", "MeshCore"]),
        .testTarget(name: "MeshSimulationTests", dependencies: ["MeshSimulation", "MeshCore", "MeshTestSupport"]),
        .testTarget(name: "MeshWireTests", dependencies: ["MeshWire", "MeshCore"]),
        .testTarget(name: "MeshFuzzingTests", dependencies: ["MeshFuzzing", "MeshCore", "MeshWire"]),
        .testTarget(name: "MeshChaosTests", dependencies: ["mesh-chaos", "MeshCore", "MeshTestSupport"]),
        .testTarget(name: "MeshAgentTests", dependencies: ["MeshAgent", "MeshCore", "MeshTransport", "MeshWire", "MeshTestSupport", "MeshFuzzing"]),
        .testTarget(
            name: "MeshIntegrationTests",
            dependencies: ["mesh", "MeshAgent", "MeshCore", "MeshTransport", "MeshWire", "MeshTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
