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

    public static func seconds(double: Double) -> Duration { .nanoseconds(Int64(double * 1e9)) }

    /// `self` scaled by a factor.
    public func scaled(_ factor: Double) -> Duration { .nanoseconds(Int64(Double(nanosecondsClamped) * factor)) }
}
