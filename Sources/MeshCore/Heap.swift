/// A binary min-heap ordered by `key`, with ties broken by insertion order (so anything driven by
/// it is deterministic). Used for the agent's timers and the simulator's events.
public struct Heap<Key: Comparable, Payload> {
    fileprivate struct Entry {
        var key: Key
        var seq: UInt64
        var payload: Payload
    }

    private var entries: [Entry] = []
    private var counter: UInt64 = 0

    public init() {}

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }
    /// The smallest key.
    public var minKey: Key? { entries.first?.key }
    public var min: (key: Key, payload: Payload)? { entries.first.map { ($0.key, $0.payload) } }

    public mutating func push(_ key: Key, _ payload: Payload) {
        counter += 1
        entries.append(Entry(key: key, seq: counter, payload: payload))
        var i = entries.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(i, parent) else { break }
            entries.swapAt(i, parent)
            i = parent
        }
    }

    /// Removes and returns the entry with the smallest key.
    public mutating func pop() -> (key: Key, payload: Payload)? {
        guard !entries.isEmpty else { return nil }
        entries.swapAt(0, entries.count - 1)
        let e = entries.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < entries.count && less(l, m) { m = l }
            if r < entries.count && less(r, m) { m = r }
            if m == i { break }
            entries.swapAt(i, m)
            i = m
        }
        return (e.key, e.payload)
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        entries[a].key < entries[b].key || (entries[a].key == entries[b].key && entries[a].seq < entries[b].seq)
    }
}

extension Heap: Sendable where Key: Sendable, Payload: Sendable {}
extension Heap.Entry: Sendable where Key: Sendable, Payload: Sendable {}
