import MeshCore

/// What the simulated network does to each message.
public struct NetworkFaults: Sendable, Equatable {
    /// Probability that a message is lost.
    public var loss: Double
    /// Probability that a message is delivered twice.
    public var duplication: Double
    /// Each delivery takes a uniformly random delay in this range (so messages reorder).
    public var minDelay: Duration
    public var maxDelay: Duration

    public init(loss: Double = 0, duplication: Double = 0, minDelay: Duration = .microseconds(200), maxDelay: Duration = .milliseconds(2)) {
        self.loss = loss
        self.duplication = duplication
        self.minDelay = minDelay
        self.maxDelay = maxDelay
    }

    public static let none = NetworkFaults()
}

/// Which nodes can reach which: symmetric partitions into groups, plus one-way blocks.
struct Reachability {
    /// Group of each node index; nodes in different groups cannot talk. Empty: one group.
    var group: [Int: Int] = [:]
    /// (from, to) pairs that are cut in that direction only.
    var blocked: Set<Pair> = []

    struct Pair: Hashable {
        var from: Int
        var to: Int
    }

    func canSend(_ from: Int, _ to: Int) -> Bool {
        if blocked.contains(Pair(from: from, to: to)) { return false }
        return (group[from] ?? 0) == (group[to] ?? 0)
    }
}
