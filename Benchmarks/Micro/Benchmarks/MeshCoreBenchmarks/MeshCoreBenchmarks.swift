// Microbenchmarks of MeshCore, MeshSimulation and MeshWire (ordo-one/benchmark).
//
// Run from Benchmarks/Micro:
//   swift package --disable-sandbox benchmark
// One group only, e.g.:
//   swift package --disable-sandbox benchmark --filter 'Scheduler.*'
//
// Each benchmark builds what it needs in its `setup` closure (or outside startMeasurement()), so
// only the work named in its title is measured. Rates that are not "iterations per second" are
// reported as custom metrics (assignments/s, entries/s), computed from the wall clock of the
// measured region of each iteration.

import Benchmark
import MeshCore

/// Custom metrics: counts and rates read from the measured region of each iteration.
enum Metrics {
    static let assignments = BenchmarkMetric.custom("assignments", polarity: .prefersLarger, useScalingFactor: false)
    static let assignmentsPerSecond = BenchmarkMetric.custom("assignments/s", polarity: .prefersLarger, useScalingFactor: false)
    static let entries = BenchmarkMetric.custom("entries committed", polarity: .prefersLarger, useScalingFactor: false)
    static let entriesPerSecond = BenchmarkMetric.custom("entries/s", polarity: .prefersLarger, useScalingFactor: false)
    static let packets = BenchmarkMetric.custom("packets delivered", polarity: .prefersSmaller, useScalingFactor: false)
    static let submitsPerSecond = BenchmarkMetric.custom("submits/s", polarity: .prefersLarger, useScalingFactor: false)
    static let bytes = BenchmarkMetric.custom("encoded bytes", polarity: .prefersSmaller, useScalingFactor: false)

    /// The metrics every benchmark reports.
    static let standard: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal]
}

/// Per second, from a count and the wall-clock time it took.
func perSecond(_ count: Int, _ elapsed: Duration) -> Int {
    let seconds = elapsed.seconds
    return seconds > 0 ? Int((Double(count) / seconds).rounded()) : 0
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: Metrics.standard,
        warmupIterations: 2,
        maxDuration: .seconds(2),
        maxIterations: 10_000
    )
    schedulerBenchmarks()
    labControlBenchmarks()
    consensusBenchmarks()
    wireBenchmarks()
}
