/// A point on the agent's monotonic clock, in nanoseconds from an arbitrary origin. MeshCore never
/// reads a clock: the shell (or the simulator) passes the current instant into every event.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static let zero = Instant(nanoseconds: 0)

    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }

    // Saturating: a lease, a deadline or a clock from another machine can be far from ours, and
    // an instant that traps on overflow would crash the agent (and, for a replicated value, every
    // coordinator in turn).
    public static func + (a: Instant, d: Duration) -> Instant { Instant(nanoseconds: saturatingAdd(a.nanoseconds, d.nanosecondsClamped)) }
    public static func - (a: Instant, d: Duration) -> Instant {
        let n = d.nanosecondsClamped
        return Instant(nanoseconds: n == .min ? saturatingAdd(a.nanoseconds, .max) : saturatingAdd(a.nanoseconds, -n))
    }
    public static func - (a: Instant, b: Instant) -> Duration {
        let (d, overflow) = a.nanoseconds.subtractingReportingOverflow(b.nanoseconds)
        if overflow { return .nanoseconds(a.nanoseconds < b.nanoseconds ? Int64.min : Int64.max) }
        return .nanoseconds(d)
    }
    public static func += (a: inout Instant, d: Duration) { a = a + d }

    public var description: String {
        let ms = Double(nanoseconds) / 1e6
        return "t+\(ms.rounded() / 1000)s"
    }
}

extension Duration {
    /// The duration in whole nanoseconds (saturating).
    public var nanosecondsClamped: Int64 {
        let (s, atto) = components
        let (ns, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? .min : .max }
        return ns &+ atto / 1_000_000_000
    }

    /// The duration in seconds, as a Double.
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }

    /// `double` seconds, saturating: NaN is zero, and anything beyond ±292 years is that (a
    /// conversion that traps on a value read from a setting or a message would crash the agent).
    public static func seconds(double: Double) -> Duration { .nanoseconds(saturatingInt64(double * 1e9)) }

    /// `self` scaled by a factor (saturating).
    public func scaled(_ factor: Double) -> Duration { .nanoseconds(saturatingInt64(Double(nanosecondsClamped) * factor)) }
}

/// `a + b`, clamped to Int64's range.
func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
    let (s, overflow) = a.addingReportingOverflow(b)
    return overflow ? (b > 0 ? .max : .min) : s
}

extension Duration {
    /// Whole seconds from a count that came from outside (a job's lease or timeout), clamped to
    /// `limit` first: `Duration.seconds(Int64(x))` traps for x ≥ 2^63.
    public static func seconds(_ count: UInt64, limit: UInt64) -> Duration { .seconds(Int64(Swift.min(count, limit, UInt64(Int64.max)))) }

    /// Whole seconds, clamped to Int's range (for messages).
    public var wholeSeconds: Int { Int(components.seconds) }
}

/// `d` as an Int64, rounded towards zero, clamped to Int64's range; NaN is 0.
func saturatingInt64(_ d: Double) -> Int64 {
    if d.isNaN { return 0 }
    if d >= 9.2e18 { return .max }
    if d <= -9.2e18 { return .min }
    return Int64(d)
}
