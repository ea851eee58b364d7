extension Membership {
    /// Updates waiting to be piggybacked. Each is sent a limited number of times (more in a larger
    /// mesh), least-sent first and newest first among equals; a newer update about a member
    /// replaces the older one. Kept in buckets by transmit count, so a packet's share costs only
    /// the updates it takes.
    struct Broadcasts: Sendable {
        private var pending: [NodeID: (update: Update, transmits: Int, version: UInt64)] = [:]
        /// buckets[t]: entries sent t times, oldest first; stale entries are skipped when met.
        private var buckets: [[(node: NodeID, version: UInt64)]] = [[]]
        private var version: UInt64 = 0

        var isEmpty: Bool { pending.isEmpty }
        var count: Int { pending.count }

        mutating func add(_ update: Update) {
            version += 1
            pending[update.node] = (update, 0, version)
            buckets[0].append((update.node, version))
        }

        func contains(_ update: Update) -> Bool { pending[update.node]?.update == update }

        mutating func remove(_ node: NodeID) { pending[node] = nil }

        /// Up to `max` updates for one packet. An update sent `limit` times is dropped.
        mutating func take(max: Int, limit: Int) -> [Update] {
            guard !pending.isEmpty, max > 0 else { return [] }
            var out: [Update] = []
            var moved: [(node: NodeID, version: UInt64, transmits: Int)] = []
            var t = 0
            while out.count < max, t < buckets.count {
                while out.count < max, let e = buckets[t].popLast() {
                    guard let p = pending[e.node], p.version == e.version, p.transmits == t else { continue }
                    out.append(p.update)
                    if t + 1 >= limit {
                        pending[e.node] = nil
                    } else {
                        pending[e.node]!.transmits = t + 1
                        moved.append((e.node, e.version, t + 1))
                    }
                }
                t += 1
            }
            for m in moved {
                while buckets.count <= m.transmits { buckets.append([]) }
                buckets[m.transmits].append((m.node, m.version))
            }
            if pending.isEmpty { buckets = [[]] }
            return out
        }
    }

    /// Lifeguard's local-health-aware suspicion: the timeout starts at `max` and falls towards
    /// `min` as independent members confirm the suspicion.
    struct Suspicion: Sendable {
        var incarnation: UInt64
        var startedAt: Instant
        /// Members whose suspicion we have heard (the first included, who does not count).
        var confirmers: Set<NodeID>
        var confirmations: Int
        /// Confirmations after which the timeout is `min`.
        var expected: Int
        var min: Duration
        var max: Duration
        /// When our own probe of the suspect last failed. We declare it dead only on fresh evidence
        /// of our own: others' reports shorten the wait, but a death needs our own recent failure.
        var ownFailureAt: Instant?

        /// Records a confirmation; true if it is a new, independent one.
        mutating func confirm(_ from: NodeID) -> Bool {
            guard confirmations < expected, confirmers.insert(from).inserted else { return false }
            confirmations += 1
            return true
        }

        var timeout: Duration {
            Suspicion.timeout(confirmations: confirmations, expected: expected, min: min, max: max)
        }

        var deadline: Instant { startedAt + timeout }

        /// max - (max - min) × ln(c + 1) / ln(k + 1), never below min.
        static func timeout(confirmations c: Int, expected k: Int, min: Duration, max: Duration) -> Duration {
            guard k >= 1 else { return min }
            let fraction = log(Double(c) + 1) / log(Double(k) + 1)
            let t = max.seconds - fraction * (max.seconds - min.seconds)
            return t <= min.seconds ? min : .seconds(double: t)
        }
    }
}

/// Natural logarithm without Foundation (MeshCore imports neither Foundation nor Glibc): an
/// argument reduction to [1, 2) and an atanh series, accurate to ~1e-12, which is plenty for
/// timeouts.
func log(_ x: Double) -> Double {
    precondition(x > 0)
    var m = x
    var e = 0.0
    while m >= 2 { m /= 2; e += 1 }
    while m < 1 { m *= 2; e -= 1 }
    let y = (m - 1) / (m + 1)
    let y2 = y * y
    var term = y
    var sum = 0.0
    var k = 1.0
    while abs(term / k) > 1e-15 {
        sum += term / k
        term *= y2
        k += 2
    }
    return 2 * sum + e * 0.693_147_180_559_945_3
}

/// log10 for the suspicion and retransmit scales.
func log10(_ x: Double) -> Double { log(x) / 2.302_585_092_994_046 }

extension Array {
    /// The first index whose element satisfies `belongsInSecondPartition` (the array is partitioned
    /// by it, e.g. sorted), by binary search.
    func partitioningIndex(where belongsInSecondPartition: (Element) -> Bool) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if belongsInSecondPartition(self[mid]) { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }
}

extension Membership {
    /// Lifeguard's suspicion timeout after `confirmations` of `expected`, between `min` and `max`.
    public static func suspicionTimeout(confirmations: Int, expected: Int, min: Duration, max: Duration) -> Duration {
        Suspicion.timeout(confirmations: confirmations, expected: expected, min: min, max: max)
    }
}
