import MeshCore
import Testing

@Suite("Raft: elections")
struct ElectionTests {
    @Test("a follower whose timer fires pre-votes, then votes, and becomes the only leader")
    func election() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        #expect(s.node("a").role == .preCandidate)
        #expect(s.node("a").term == 1)  // a pre-vote does not raise the term
        s.deliverAll()
        #expect(s.leaders == ["a"])
        #expect(s.node("a").term == 2)
        s.run(.milliseconds(300))
        #expect(s.node("b").leader == s.id("a") && s.node("c").leader == s.id("a"))
    }

    @Test("a vote is persisted before the answer that grants it goes out")
    func persistBeforeSend() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll(limit: 2)  // pre-votes answered
        s.deliverAll(limit: 2)  // a's pre-vote grants
        while let i = s.queue.firstIndex(where: { if case .vote = $0.message { $0.to == s.id("b") } else { false } }) {
            s.deliver(s.queue.remove(at: i))
        }
        let d = s.last["b"]!
        let persist = d.firstIndex { if case .persist(let hs?, _, _) = $0 { hs.votedFor == s.id("a") } else { false } }
        let grant = d.firstIndex { if case .send(let p) = $0 { p.message == .voteResponse(granted: true) } else { false } }
        #expect(persist != nil && grant != nil && persist! < grant!)
        #expect(s.disks["b"]!.hardState == .init(term: 2, votedFor: s.id("a")))
    }

    @Test("pre-vote: a node cut off campaigns without raising its term, and rejoins without disrupting the leader")
    func preVoteProtects() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        s.isolate("c")
        // Ten seconds: c campaigns again and again on its own.
        s.run(.seconds(10))
        #expect(s.node("c").role == .preCandidate)
        #expect(s.node("c").term == 2)
        s.heal()
        s.fire("c", after: .milliseconds(50))
        s.deliverAll()
        // b and a are in the leader's lease and refuse: the leader stays.
        #expect(s.leaders == ["a"])
        #expect(s.node("a").term == 2)
    }

    @Test("lease: a follower that heard from its leader recently refuses pre-votes and votes")
    func lease() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        s.run(.milliseconds(200))
        let p = Consensus.Packet(from: s.id("c"), to: s.id("b"), term: 3, message: .vote(lastIndex: 10, lastTerm: 2, transfer: false))
        s.deliver(p)
        #expect(s.node("b").term == 2)
        #expect(s.queue.isEmpty)
    }

    @Test("check-quorum: a leader that cannot hear a majority steps down")
    func checkQuorum() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        s.isolate("a")
        s.run(.seconds(3))
        #expect(s.node("a").role != .leader)
        // Meanwhile the majority elected someone else.
        #expect(s.leaders.count == 1 && s.leaders[0] != "a")
    }

    @Test("fast failover: followers that see the leader's connection drop pre-vote at once")
    func fastFailover() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        s.run(.milliseconds(200))
        s.isolate("a")
        // The shell reports the drop as soon as the kernel closes the socket; within one
        // heartbeat interval (far below the 1–2 s election timeout) a new leader is in.
        s.carryOut("b", s.nodes["b"]!.onLeaderUnreachable(now: s.now))
        s.carryOut("c", s.nodes["c"]!.onLeaderUnreachable(now: s.now))
        s.run(s.settings.heartbeatInterval + .milliseconds(10), step: .milliseconds(1))
        #expect(s.leaders.filter { $0 != "a" }.count == 1)
    }

    @Test("one node's report of a drop does not unseat a leader the others still hear")
    func falseDropIsHarmless() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        s.run(.milliseconds(200))
        s.carryOut("b", s.nodes["b"]!.onLeaderUnreachable(now: s.now))
        s.deliverAll()
        #expect(s.leaders == ["a"])
        #expect(s.node("a").term == 2)
    }

    @Test("a node that is the only voter elects itself at start")
    func singleVoter() {
        var s = RaftStory(voters: ["a"])
        s.carryOut("a", s.nodes["a"]!.start(now: .zero))
        #expect(s.leaders == ["a"])
        let i = s.propose("a", "k")
        #expect(i != nil && s.node("a").commitIndex == i)
        #expect(s.appliedKeys("a") == ["k"])
    }

    @Test("a learner never campaigns")
    func learnerDoesNotCampaign() {
        var s = RaftStory(voters: ["a", "b", "c"], learners: ["d"])
        s.fire("d", after: .seconds(30))
        #expect(s.node("d").role == .follower)
        #expect(s.queue.isEmpty)
    }

    @Test("leadership transfer: the target catches up, campaigns past the lease, and wins")
    func transfer() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        _ = s.propose("a", "x")
        s.carryOut("a", s.nodes["a"]!.transferLeadership(to: s.id("c"), now: s.now))
        #expect(s.propose("a", "refused") == nil)  // no proposals while transferring
        s.deliverAll()
        #expect(s.leaders == ["c"])
        #expect(s.node("c").term == 3)
    }
}

@Suite("Raft: replication")
struct ReplicationTests {
    @Test("a proposal is replicated, committed on a majority, and applied everywhere in order")
    func replicate() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        for k in ["k1", "k2", "k3"] { _ = s.propose("a", k) }
        s.deliverAll()
        s.run(.milliseconds(200))
        for n in ["a", "b", "c"] { #expect(s.appliedKeys(n) == ["k1", "k2", "k3"]) }
    }

    @Test("without a majority nothing commits; it does once the majority is back")
    func noQuorumNoCommit() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        s.isolate("b")
        s.cut.insert(["a", "c"])
        let i = s.propose("a", "k")!
        s.deliverAll()
        #expect(s.node("a").commitIndex < i)
        s.heal()
        s.run(.milliseconds(300))
        #expect(s.node("a").commitIndex >= i)
        #expect(s.appliedKeys("c") == ["k"])
    }

    @Test("log repair: a follower's divergent, uncommitted tail is replaced, in few round trips")
    func repair() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        s.run(.milliseconds(100))
        // a, cut off, takes 50 proposals that only it has.
        s.isolate("a")
        for i in 0..<50 { _ = s.propose("a", "lost\(i)") }
        // b leads a higher term and commits its own entry.
        s.fire("b", after: .seconds(3))
        s.deliverAll()
        #expect(s.leaders.contains("b"))
        _ = s.propose("b", "kept")
        s.deliverAll()
        s.heal()
        // a hears the new term and follows; count the rounds until its log matches.
        var rounds = 0
        while s.node("a").lastIndex != s.node("b").lastIndex || s.node("a").commitIndex < s.node("b").commitIndex {
            s.run(.milliseconds(100))
            rounds += 1
            if rounds > 30 { break }
        }
        #expect(s.appliedKeys("a") == ["kept"])
        #expect(!s.disks["a"]!.entries.contains { if case .command(let r) = $0.payload, case .setSetting(let k, _) = r.command { k.hasPrefix("lost") } else { false } })
        #expect(rounds <= 3)
    }

    @Test("Figure 8: an entry of an earlier term is never committed by counting replicas alone")
    func figure8() {
        var s = RaftStory(voters: ["a", "b", "c", "d", "e"])
        s.fire("a")
        s.deliverAll()
        s.run(.milliseconds(100))
        // a appends at term 2 and reaches only b.
        s.isolate("a")
        s.cut.remove(["a", "b"])
        s.cut.remove(["b", "a"])
        let i = s.propose("a", "old")!
        s.deliverAll()
        #expect(s.node("b").lastIndex >= i)
        #expect(s.node("a").commitIndex < i)
        // e leads term 3 without a and b, then a and b come back; whatever happens, no two nodes
        // may ever disagree on a committed entry.
        s.heal()
        s.isolate("a")
        s.isolate("b")
        s.fire("e", after: .seconds(3))
        s.deliverAll()
        _ = s.propose("e", "new")
        s.heal()
        s.isolate("e")
        s.run(.seconds(5))
        let logs = ["a", "b", "c", "d"].map { s.appliedKeys($0) }
        for p in logs {
            for q in logs {
                let n = min(p.count, q.count)
                #expect(Array(p.prefix(n)) == Array(q.prefix(n)))
            }
        }
    }

    @Test("a restarted node keeps its term, vote and log, and does not vote twice in a term")
    func restart() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        _ = s.propose("a", "k")
        s.deliverAll()
        s.restart("b")
        #expect(s.node("b").term == 2)
        #expect(s.node("b").votedFor == s.id("a"))
        #expect(s.node("b").lastIndex == s.node("a").lastIndex)
        // c asks b for its vote in term 2: b already voted for a in that term.
        s.deliver(.init(from: s.id("c"), to: s.id("b"), term: 2, message: .vote(lastIndex: 99, lastTerm: 2, transfer: false)))
        #expect(s.queue.last?.message == .voteResponse(granted: false))
    }
}

@Suite("Raft: snapshots and configuration")
struct SnapshotConfigTests {
    @Test("a follower too far behind gets the snapshot, restores it, and catches up")
    func snapshot() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        s.isolate("c")
        for i in 0..<20 { _ = s.propose("a", "k\(i)") }
        s.deliverAll()
        let applied = s.node("a").appliedIndex
        s.carryOut("a", s.nodes["a"]!.compact(upTo: applied, data: [1, 2, 3], now: s.now))
        #expect(s.disks["a"]!.snapshot?.index == applied)
        #expect(s.disks["a"]!.entries.allSatisfy { $0.index > applied })
        _ = s.propose("a", "after")
        s.heal()
        s.run(.milliseconds(500))
        #expect(s.restored["c"]?.last?.index == applied)
        #expect(s.restored["c"]?.last?.data == [1, 2, 3])
        #expect(s.node("c").lastIndex == s.node("a").lastIndex)
        #expect(s.appliedKeys("c") == ["after"])
    }

    @Test("installing a snapshot discards the whole old log on disk, not just the part it covers (found by seed 29)")
    func installDiscardsLog() {
        var s = RaftStory(voters: ["a", "b", "c", "d", "e"])
        s.fire("a")
        s.deliverAll()
        s.run(.milliseconds(100))
        // e takes two entries from a that never commit: its disk now holds a stale tail.
        s.isolate("a")
        s.cut.remove(["a", "e"])
        for i in 0..<10 { _ = s.propose("a", "stale\(i)") }
        s.deliverAll()
        let staleTail = s.disks["e"]!.entries.map(\.index).max()!
        // b leads with c and d, commits past that point, and compacts.
        s.heal()
        s.isolate("a")
        s.isolate("e")
        s.run(.seconds(3))
        let leader = try! #require(s.leaders.first { $0 != "a" })
        for i in 0..<3 { _ = s.propose(leader, "k\(i)") }
        s.deliverAll()
        let snapshotAt = s.node(leader).appliedIndex
        s.carryOut(leader, s.nodes[leader]!.compact(upTo: snapshotAt, data: [9], now: s.now))
        // The stale tail reaches past the snapshot: those entries must go too.
        #expect(staleTail > snapshotAt)
        // e comes back, gets the snapshot, then more entries.
        s.heal()
        s.isolate("a")
        s.run(.milliseconds(500))
        #expect(s.restored["e"]?.isEmpty == false)
        for i in 0..<3 { _ = s.propose(leader, "after\(i)") }
        s.run(.milliseconds(300))
        // What e has on disk is exactly the leader's log after the snapshot, nothing older.
        #expect(s.disks["e"]!.entries.allSatisfy { e in s.node(leader).entry(at: e.index)?.term == e.term })
        s.restart("e")
        s.run(.milliseconds(500))
        #expect(s.node("e").lastIndex == s.node(leader).lastIndex)
    }

    @Test("configuration changes: a learner is added, promoted to voter, and a voter removed, one at a time")
    func configuration() {
        var s = RaftStory(voters: ["a", "b", "c"], learners: [])
        s.fire("a")
        s.deliverAll()
        let a = s.id("a"), b = s.id("b"), c = s.id("c"), d = NodeID(9)
        // Two voters at once is refused.
        if case .failure(let e) = s.nodes["a"]!.proposeConfiguration(.init(voters: [a, b, c, d, NodeID(10)]), now: s.now) {
            #expect(e == .invalidConfiguration("change one voter at a time (adding 2, removing 0)"))
        } else { Issue.record("accepted a double change") }
        guard case .success(let (i1, d1)) = s.nodes["a"]!.proposeConfiguration(.init(voters: [a, b, c], learners: [d]), now: s.now) else {
            Issue.record("refused a learner"); return
        }
        s.carryOut("a", d1)
        // One change at a time.
        if case .failure(let e) = s.nodes["a"]!.proposeConfiguration(.init(voters: [a, b, c, d]), now: s.now) {
            #expect(e == .configurationChangePending)
        } else { Issue.record("accepted a second pending change") }
        s.deliverAll()
        #expect(s.node("a").commitIndex >= i1)
        #expect(s.node("b").configuration.learners == [d])
        guard case .success(let (_, d2)) = s.nodes["a"]!.proposeConfiguration(.init(voters: [a, b]), now: s.now) else {
            Issue.record("refused removing c"); return
        }
        s.carryOut("a", d2)
        s.deliverAll()
        #expect(s.node("a").configuration.voters == [a, b])
        #expect(s.node("a").configuration.quorum == 2)
        // The leader cannot remove itself.
        if case .failure(let e) = s.nodes["a"]!.proposeConfiguration(.init(voters: [b]), now: s.now) {
            #expect(e == .invalidConfiguration("the leader cannot remove itself; transfer leadership first"))
        } else { Issue.record("leader removed itself") }
    }

    @Test("a proposal to a follower is refused with the leader's id")
    func notLeader() {
        var s = RaftStory(voters: ["a", "b", "c"])
        s.fire("a")
        s.deliverAll()
        s.run(.milliseconds(100))
        let r = ClusterState.Request(client: .init(1), sequence: 1, command: .setSetting(key: "k", value: "v"))
        if case .failure(let e) = s.nodes["b"]!.propose(r, now: s.now) {
            #expect(e == .notLeader(s.id("a")))
        } else { Issue.record("a follower took a proposal") }
    }
}

@Suite("ClusterState")
struct ClusterStateTests {
    @Test("a retried request applies once and gets the same answer")
    func sessions() {
        var st = ClusterState()
        let r = ClusterState.Request(client: .init(5), sequence: 1, command: .register(NodeID(1), name: "alpha", address: "a:1", capacity: .init()))
        _ = st.apply(r, at: 1)
        let cordon = ClusterState.Request(client: .init(5), sequence: 2, command: .cordon(name: "alpha", reason: "disk"))
        let first = st.apply(cordon, at: 2)
        let retry = st.apply(cordon, at: 3)
        #expect(first == retry)
        #expect(st.nodes[NodeID(1)]?.cordoned == true)
        let stale = st.apply(.init(client: .init(5), sequence: 1, command: .uncordon(name: "alpha")), at: 4)
        #expect(!stale.isDone)
        #expect(st.nodes[NodeID(1)]?.cordoned == true)
    }

    @Test("cordon and uncordon by name; unknown names are refused")
    func cordon() {
        var st = ClusterState()
        _ = st.apply(.init(client: .init(1), sequence: 1, command: .register(NodeID(1), name: "alpha", address: "a:1", capacity: .init())), at: 1)
        #expect(st.apply(.init(client: .init(2), sequence: 1, command: .cordon(name: "nope", reason: "")), at: 2) == .rejected("no node named 'nope' in the mesh"))
        #expect(st.apply(.init(client: .init(2), sequence: 2, command: .cordon(name: "alpha", reason: "")), at: 3).isDone)
        #expect(st.apply(.init(client: .init(2), sequence: 3, command: .uncordon(name: "alpha")), at: 4).isDone)
        #expect(st.nodes[NodeID(1)]?.cordoned == false)
        #expect(st.appliedIndex == 4)
    }
}
