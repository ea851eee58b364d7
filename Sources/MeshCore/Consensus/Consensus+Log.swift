extension Consensus {
    /// The log after the last snapshot, with the snapshot's index and term as its base.
    struct Log: Sendable, Equatable {
        private(set) var snapshotIndex: Index = 0
        private(set) var snapshotTerm: Term = 0
        private(set) var entries: [Entry] = []

        init(snapshotIndex: Index = 0, snapshotTerm: Term = 0, entries: [Entry] = []) {
            self.snapshotIndex = snapshotIndex
            self.snapshotTerm = snapshotTerm
            self.entries = entries
        }

        var lastIndex: Index { snapshotIndex + Index(entries.count) }
        var lastTerm: Term { entries.last?.term ?? snapshotTerm }
        var firstIndex: Index { snapshotIndex + 1 }

        /// The term of the entry at `index`, or nil if it is compacted away or not there.
        func term(at index: Index) -> Term? {
            if index == snapshotIndex { return snapshotTerm }
            guard index > snapshotIndex, index <= lastIndex else { return nil }
            return entries[Int(index - snapshotIndex - 1)].term
        }

        func entry(at index: Index) -> Entry? {
            guard index > snapshotIndex, index <= lastIndex else { return nil }
            return entries[Int(index - snapshotIndex - 1)]
        }

        /// Entries from `index` on, at most `max` of them and (past the first) about `maxBytes`.
        func entries(from index: Index, max: Int, maxBytes: Int = .max) -> [Entry] {
            guard index > snapshotIndex, index <= lastIndex else { return [] }
            let start = Int(index - snapshotIndex - 1)
            var end = start
            var bytes = 0
            while end < Swift.min(entries.count, start + max) {
                bytes += entries[end].payload.approximateSize
                if end > start && bytes > maxBytes { break }
                end += 1
            }
            return Array(entries[start..<end])
        }

        /// Entries in `from...to`.
        func entries(_ range: ClosedRange<Index>) -> [Entry] {
            guard range.lowerBound > snapshotIndex, range.upperBound <= lastIndex else { return [] }
            return Array(entries[Int(range.lowerBound - snapshotIndex - 1)...Int(range.upperBound - snapshotIndex - 1)])
        }

        mutating func append(_ new: [Entry]) { entries += new }

        /// Drops every entry after `index`.
        mutating func truncate(after index: Index) {
            guard index < lastIndex else { return }
            entries.removeLast(Int(lastIndex - Swift.max(index, snapshotIndex)))
        }

        /// Drops entries up to `index` (now in a snapshot with that term).
        mutating func compact(upTo index: Index, term: Term) {
            if index >= lastIndex {
                entries = []
            } else if index > snapshotIndex {
                entries.removeFirst(Int(index - snapshotIndex))
            }
            snapshotIndex = index
            snapshotTerm = term
        }

        /// Raft's up-to-date check: is a candidate whose log ends at (index, term) at least as
        /// up to date as ours?
        func isUpToDate(lastIndex li: Index, lastTerm lt: Term) -> Bool {
            lt > lastTerm || (lt == lastTerm && li >= lastIndex)
        }

        /// The largest index at or below `index` whose term is at most `term` (etcd's
        /// findConflictByTerm): with it, one rejected append skips a whole divergent term.
        func lastIndex(atOrBelow index: Index, withTermAtMost term: Term) -> (index: Index, term: Term) {
            var i = Swift.min(index, lastIndex)
            while i > snapshotIndex {
                let t = self.term(at: i)!
                if t <= term { return (i, t) }
                i -= 1
            }
            return (snapshotIndex, snapshotTerm)
        }
    }
}
