/// A point on the agent's monotonic clock, in nanoseconds from an arbitrary origin. MeshCore never
/// reads a clock: the shell (or the simulator) passes the current instant into every event.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    public static let zero = Instant(nanoseconds: 0)

    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }

    public static func + (a: Instant, d: Duration) -> Instant { Instant(nanoseconds: a.nanoseconds + d.nanosecondsClamped) }
    public static func - (a: Instant, d: Duration) -> Instant { Instant(nanoseconds: a.nanoseconds - d.nanosecondsClamped) }
    public static func - (a: Instant, b: Instant) -> Duration { .nanoseconds(a.nanoseconds - b.nanoseconds) }
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

/// `d` as an Int64, rounded towards zero, clamped to Int64's range; NaN is 0.
func saturatingInt64(_ d: Double) -> Int64 {
    if d.isNaN { return 0 }
    if d >= 9.2e18 { return .max }
    if d <= -9.2e18 { return .min }
    return Int64(d)
}
