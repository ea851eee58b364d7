// Clocks and summaries the benchmarks share.
import Foundation

/// Nanoseconds on the real-time clock: the same clock a job's `date +%s%N` reads.
public func wallNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

public func seconds(since t0: Int64) -> Double { Double(wallNanos() - t0) / 1e9 }

/// Nanoseconds on the monotonic clock: for durations (no step or slew of the wall clock).
public func monoNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

public func monoSeconds(since t0: Int64) -> Double { Double(monoNanos() - t0) / 1e9 }

public func median(_ xs: [Double]) -> Double? {
    guard !xs.isEmpty else { return nil }
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

public func quantile(_ xs: [Double], _ q: Double) -> Double? {
    guard !xs.isEmpty else { return nil }
    let s = xs.sorted()
    return s[min(s.count - 1, Int((Double(s.count - 1) * q).rounded()))]
}
