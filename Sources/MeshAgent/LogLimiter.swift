import Logging

/// Keeps a misbehaving client from flooding the log: at most one message per key per interval,
/// with the count of those suppressed in between.
struct LogLimiter {
    let interval: Duration
    private var last: [String: (at: ContinuousClock.Instant, suppressed: Int)] = [:]

    init(interval: Duration = .seconds(30)) { self.interval = interval }

    /// Logs `message` unless one with the same key was logged less than `interval` ago.
    mutating func warning(_ logger: Logger, key: String, now: ContinuousClock.Instant, _ message: @autoclosure () -> String) {
        if let l = last[key], now - l.at < interval {
            last[key]!.suppressed += 1
            return
        }
        let suppressed = last[key]?.suppressed ?? 0
        last[key] = (now, 0)
        if last.count > 1000 { last.removeAll() }
        let suffix = suppressed > 0 ? " (\(suppressed) more like it since the last report)" : ""
        logger.warning("\(message())\(suffix)")
    }
}
