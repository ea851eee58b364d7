import Foundation
import MeshCore

/// What a run does: how long the faults last, which faults, how long jobs run, and the mesh's
/// lease timings (short, so that a lost worker's jobs move within seconds).
struct Profile: Sendable {
    var name: String
    var faultSeconds: Double
    var kinds: [Fault.Kind]
    /// Quiet time between two faults.
    var gap: ClosedRange<Double>
    /// How long a fault is held before it is healed.
    var hold: ClosedRange<Double>
    var jobSeconds: ClosedRange<Double>
    var clients: Int
    /// A client's pause between two submits.
    var pause: ClosedRange<Double>
    /// Every acknowledged job must be terminal within this long after the faults are healed.
    var drainSeconds: Double
    var leaseSeconds: Double
    var leaseGraceSeconds: Double
    /// SIGTERM → SIGKILL (`kill_grace_seconds`): longer than the lease grace, so that jobs that
    /// ignore SIGTERM test that the coordinator waits for their SIGKILL.
    var killGraceSeconds: Double
    /// The share of jobs that ignore SIGTERM.
    var hardShare: Double
    var slots: Int

    static let all: [String: Profile] = [
        // CI: every kind of fault, a few minutes.
        "short": Profile(
            name: "short", faultSeconds: 150, kinds: Fault.Kind.allCases, gap: 1...3, hold: 3...7,
            jobSeconds: 0.2...3, clients: 3, pause: 0.2...0.8, drainSeconds: 240, leaseSeconds: 2, leaseGraceSeconds: 1,
            killGraceSeconds: 2, hardShare: 0.2, slots: 2),
        // On demand: an hour of everything mixed.
        "long": Profile(
            name: "long", faultSeconds: 3600, kinds: Fault.Kind.allCases, gap: 1...4, hold: 3...9,
            jobSeconds: 0.2...4, clients: 3, pause: 0.2...0.8, drainSeconds: 600, leaseSeconds: 2, leaseGraceSeconds: 1,
            killGraceSeconds: 2, hardShare: 0.2, slots: 2),
        // The zombie case only, with jobs that outlive a paused agent's lease: what fencing is for.
        "zombie": Profile(
            name: "zombie", faultSeconds: 45, kinds: [.pauseWorker], gap: 1...2, hold: 5...7,
            jobSeconds: 6...9, clients: 2, pause: 1.5...2.5, drainSeconds: 180, leaseSeconds: 1, leaseGraceSeconds: 1,
            killGraceSeconds: 0.5, hardShare: 0.5, slots: 2),
    ]
}

/// MeshCore's seeded generator: the same seed gives the same fault schedule and choices.
extension SeededRandom {
    mutating func uniform(_ r: ClosedRange<Double>) -> Double { Double.random(in: r, using: &self) }
    mutating func pick<T>(_ a: [T]) -> T { a[Int(next() % UInt64(a.count))] }
}

/// Wall-clock milliseconds (the witness's `date +%s%N` is on the same clock).
func nowMillis() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1_000_000
}

func sleep(seconds: Double) {
    guard seconds > 0 else { return }
    usleep(UInt32(min(seconds, 4000) * 1_000_000))
}

final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ v: Value) { value = v }
    func with<R>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&value) } }
    var get: Value { lock.withLock { value } }
}

/// Prints with a time offset from the start of the run.
final class Log: @unchecked Sendable {
    let start = nowMillis()
    private let lock = NSLock()
    var quiet = false
    func say(_ s: String) {
        guard !quiet else { return }
        let t = (nowMillis() - start) / 1000
        lock.withLock { FileHandle.standardOutput.write(Data((String(format: "[%7.1f s] ", t) + s + "\n").utf8)) }
    }
}
