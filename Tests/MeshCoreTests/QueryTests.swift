import MeshCore
import Testing

/// `mesh jobs` and `mesh status` read bounded pages and counts, however long the history.
@Suite("Queries of the state")
struct QueryTests {
    /// Two nodes; jobs 1…n submitted at t = id seconds, every third held, every fifth cancelled.
    static func state(_ n: Int) -> ClusterState {
        var s = ClusterState()
        var index: UInt64 = 0
        func apply(_ c: ClusterState.Command) {
            index += 1
            _ = s.apply(.init(client: .init(1), sequence: index, command: c), at: index)
        }
        apply(.register(NodeID(1), name: "n1", address: "a", capacity: .init(slots: 1)))
        apply(.register(NodeID(2), name: "n2", address: "b", capacity: .init(slots: 1)))
        for i in 1...n {
            apply(.submit(JobSpec(name: i % 2 == 0 ? "even \(i)" : "odd \(i)", command: ["true"], held: i % 3 == 0), Provenance(),
                          at: Int64(i) * 1000, via: NodeID(1)))
            if i % 5 == 0 { apply(.cancel([JobID(i)], reason: "", at: 0)) }
        }
        apply(.assign(Scheduler.plan(s, nodes: [.init(id: NodeID(1), capacity: .init(slots: 1), accepting: true),
                                                .init(id: NodeID(2), capacity: .init(slots: 1), accepting: true)], term: 1, at: 0)))
        return s
    }

    @Test("a page is the newest matching jobs; its cursor continues it to the oldest, each job once")
    func paging() {
        let s = Self.state(2500)
        let first = s.page(.init(limit: 50))
        #expect(first.jobs.map(\.id) == Array((2451...2500).reversed()))
        #expect(first.more && first.nextBefore == 2451)
        var seen: [JobID] = []
        var q = ClusterState.JobQuery()
        while true {
            let p = s.page(q)
            #expect(p.jobs.count <= ClusterState.JobQuery.defaultLimit)
            seen += p.jobs.map(\.id)
            guard p.more else { break }
            q.before = p.nextBefore
        }
        #expect(seen == Array((1...2500).reversed()))
    }

    @Test("filters are applied by the state: states, name, node, since")
    func filters() {
        let s = Self.state(300)
        let held = s.page(.init(states: [.held]))
        #expect(held.jobs.count == 300 / 3 - 300 / 15 && held.jobs.allSatisfy { $0.state == .held } && !held.more)
        let cancelled = s.page(.init(limit: 3, states: [.cancelled]))
        #expect(cancelled.jobs.map(\.id) == [300, 295, 290])
        #expect(s.page(.init(name: "even")).jobs.allSatisfy { $0.id % 2 == 0 })
        let onN1 = s.page(.init(node: NodeID(1)))
        #expect(onN1.jobs.count == 1 && onN1.jobs[0].current?.node == NodeID(1))
        let recent = s.page(.init(sinceMillis: 291_000))
        #expect(recent.jobs.map(\.id) == Array((291...300).reversed()) && !recent.more)
    }

    @Test("a filter that matches nothing in a long history answers after its scan budget, with a cursor")
    func scanBudget() {
        let s = Self.state(3000)
        var q = ClusterState.JobQuery(name: "no such job")
        q.scanBudget = 2000
        let p = s.page(q)
        #expect(p.jobs.isEmpty && p.more && p.nextBefore == 1001)
        q.before = p.nextBefore
        #expect(s.page(q).more == false)
    }

    @Test("counts by state and the status summary stay small: what runs and the first five waiting")
    func summary() {
        let s = Self.state(1000)
        #expect(s.stateCounts[.cancelled] == 200 && s.stateCounts.values.reduce(0, +) == 1000)
        #expect(s.invariantViolations().isEmpty)
        let summary = s.summaryJobs()
        #expect(summary.filter { $0.state.isActive }.count == 2)
        #expect(summary.filter { !$0.state.isActive }.count == 5)
    }
}
