import MeshCore
import Testing

@Suite("Membership: probing")
struct ProbingTests {
    @Test("a probe is a ping; its ack keeps the member alive and our health good")
    func probeAndAck() {
        var s = MembershipStory()
        let d = s.run(.seconds(1))
        let ping = try! #require(d.pings.first)
        #expect(d.pings.count == 1)
        _ = s.receive(.ack(seq: ping.seq), from: s.name(ping.target))
        let more = s.runResponsive(.seconds(5))
        #expect(more.pings.count == 5)
        #expect(["b", "c", "d", "e"].allSatisfy { s.state($0) == .alive })
        #expect(s.a.localHealth == 0)
    }

    @Test("no ack within the probe timeout: k others are asked to probe indirectly, with nacks")
    func indirect() {
        var s = MembershipStory()
        let first = s.run(.seconds(1))
        let ping = try! #require(first.pings.first)
        let later = s.run(s.settings.probeTimeout)
        let reqs = later.pingReqs
        #expect(reqs.count == 3)
        #expect(reqs.allSatisfy { $0.seq == ping.seq && $0.target == ping.target })
        #expect(!later.sent(s).contains { $0.to == s.name(ping.target) && $0.packet.message == .pingReq(seq: ping.seq, target: ping.target, address: "", wantNack: true) })
        #expect(later.sent(s).filter { if case .pingReq = $0.packet.message { true } else { false } }.allSatisfy { $0.to != s.name(ping.target) })
    }

    @Test("an ack through a helper saves the member")
    func indirectAck() {
        var s = MembershipStory()
        let ping = try! #require(s.run(.seconds(1)).pings.first)
        _ = s.run(s.settings.probeTimeout)
        _ = s.receive(.ack(seq: ping.seq), from: "c")
        _ = s.run(.seconds(2))
        #expect(s.state(s.name(ping.target)) == .alive)
    }

    @Test("no ack and no nack: the member is suspected, and missing nacks count against our own health")
    func suspectAndHealth() {
        var s = MembershipStory()
        let ping = try! #require(s.run(.seconds(1)).pings.first)
        let d = s.run(.seconds(1))
        #expect(s.state(s.name(ping.target)) == .suspect)
        #expect(d.allUpdates.contains(.suspect(ping.target, incarnation: 1, from: s.id("a"))))
        #expect(s.a.localHealth == 3)
    }

    @Test("nacks from every helper: the member is suspected but our health is not blamed")
    func nacksKeepHealth() {
        var s = MembershipStory()
        let ping = try! #require(s.run(.seconds(1)).pings.first)
        let helpers = s.run(s.settings.probeTimeout).sent(s).filter { if case .pingReq = $0.packet.message { true } else { false } }
        for h in helpers { _ = s.receive(.nack(seq: ping.seq), from: h.to) }
        _ = s.run(.seconds(1))
        #expect(s.state(s.name(ping.target)) == .suspect)
        #expect(s.a.localHealth == 0)
    }

    @Test("Lifeguard: local health stretches the probe interval")
    func healthScalesInterval() {
        var s = MembershipStory()
        _ = s.run(.seconds(2))  // one failed probe: health 3
        #expect(s.a.localHealth == 3)
        // Probes now come every (3 + 1) × 1 s.
        let d = s.run(.seconds(8))
        #expect((1...2).contains(d.pings.count))
    }

    @Test("successful direct probes bring local health back to zero, one step each")
    func healthRecovers() {
        var s = MembershipStory()
        _ = s.run(.seconds(2))
        #expect(s.a.localHealth == 3)
        // The next probes come 4, 3 and 2 s apart as health falls 3 → 2 → 1 → 0.
        let d = s.runResponsive(.seconds(14))
        #expect(s.a.localHealth == 0)
        #expect(d.pings.count >= 3)
    }

    @Test("as a helper: ping the target, forward its ack, or nack when it stays silent")
    func relay() {
        var s = MembershipStory()
        let d = s.receive(.pingReq(seq: 77, target: s.id("c"), address: "c:7770", wantNack: true), from: "b")
        let ping = try! #require(d.pings.first)
        #expect(ping.target == s.id("c"))
        let fwd = s.receive(.ack(seq: ping.seq), from: "c")
        #expect(fwd.sent(s).contains { $0.to == "b" && $0.packet.message == .ack(seq: 77) })

        let d2 = s.receive(.pingReq(seq: 78, target: s.id("d"), address: "d:7770", wantNack: true), from: "b")
        #expect(d2.pings.count == 1)
        let later = s.run(s.settings.probeTimeout)
        #expect(later.sent(s).contains { $0.to == "b" && $0.packet.message == .nack(seq: 78) })
    }

    @Test("a ping for another node id (an older agent at the same address) is not answered")
    func pingForSomeoneElse() {
        var s = MembershipStory()
        let d = s.receive(.ping(seq: 5, target: NodeID(999)), from: "b")
        #expect(d.sent(s).isEmpty)
        let ok = s.receive(.ping(seq: 6, target: s.id("a")), from: "b")
        #expect(ok.sent(s).contains { $0.to == "b" && $0.packet.message == .ack(seq: 6) })
    }

    @Test("a dropped connection gets its member probed at once")
    func connectionLost() {
        var s = MembershipStory()
        let d = s.a.onConnectionLost(s.id("d"), now: s.now)
        #expect(d.pings.map(\.target) == [s.id("d")])
    }
}

@Suite("Membership: suspicion and refutation")
struct SuspicionTests {
    @Test("a suspicion about us is refuted with a higher incarnation, persisted first")
    func refuteSuspect() {
        var s = MembershipStory()
        let d = s.receive(.gossip, from: "b", updates: [.suspect(s.id("a"), incarnation: 1, from: s.id("b"))])
        #expect(s.a.incarnation == 2)
        #expect(d.persisted == [2])
        #expect(s.a.localHealth == 1)
        let next = s.run(.seconds(1))
        #expect(next.allUpdates.contains { if case .alive(let n, 2, _) = $0 { n == s.id("a") } else { false } })
    }

    @Test("being declared dead is refuted too")
    func refuteDead() {
        var s = MembershipStory()
        _ = s.receive(.gossip, from: "c", updates: [.dead(s.id("a"), incarnation: 5, from: s.id("c"))])
        #expect(s.a.incarnation == 6)
        #expect(s.state("a") == .alive)
    }

    @Test("stale news of our suspicion makes us say again that we are alive, on our very next packet")
    func reannounce() {
        var s = MembershipStory()
        _ = s.receive(.gossip, from: "b", updates: [.suspect(s.id("a"), incarnation: 1, from: s.id("b"))])
        #expect(s.a.incarnation == 2)
        _ = s.run(.seconds(3))  // the refutation's retransmissions run out
        // c still suspects us at incarnation 1 and probes us, telling us so (buddy system).
        let d = s.receive(.ping(seq: 9, target: s.id("a")), from: "c", updates: [.suspect(s.id("a"), incarnation: 1, from: s.id("c"))])
        let ack = try! #require(d.sent(s).first { $0.to == "c" })
        #expect(ack.packet.message == .ack(seq: 9))
        #expect(ack.packet.updates.contains { if case .alive(let n, 2, _) = $0 { n == s.id("a") } else { false } })
        #expect(s.a.incarnation == 2)
    }

    @Test("a suspect that answers our probes is never declared dead on one unconfirmed report")
    func verifyBeforeDeath() {
        var settings = Membership.Settings()
        settings.probeOnSuspicion = false
        var s = MembershipStory(settings: settings)
        _ = s.receive(.gossip, from: "b", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("b"))])
        // c answers (but its refutation never reaches us): every answer starts the suspicion over.
        let d = s.runResponsive(.seconds(30))
        #expect(d.pings.contains { $0.target == s.id("c") })
        #expect(s.state("c") == .suspect)
    }

    @Test("an unconfirmed suspicion whose verifying probe fails ends in death")
    func verifyFails() {
        var settings = Membership.Settings()
        settings.probeOnSuspicion = false
        var s = MembershipStory(settings: settings)
        _ = s.receive(.gossip, from: "b", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("b"))])
        _ = s.runResponsive(.seconds(8), except: ["c"])
        #expect(s.state("c") == .dead)
    }

    @Test("our own failed probe of a suspect ends a confirmed suspicion as soon as its time is up")
    func confirmedEndsOnOwnFailure() {
        var s = MembershipStory()
        // Probing on suspicion starts a probe of c right away.
        let d = s.receive(.gossip, from: "b", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("b"))])
        #expect(d.pings.contains { $0.target == s.id("c") })
        _ = s.receive(.gossip, from: "d", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("d"))])
        _ = s.receive(.gossip, from: "e", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("e"))])
        // Three confirmations: the minimum of 1 s; our probe fails at 1 s (direct, then indirect).
        _ = s.runResponsive(.milliseconds(1050), except: ["c"], step: .milliseconds(5))
        #expect(s.state("c") == .dead)
    }

    @Test("only a higher incarnation clears a suspicion")
    func aliveClears() {
        var s = MembershipStory()
        _ = s.receive(.gossip, from: "b", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("b"))])
        #expect(s.state("c") == .suspect)
        _ = s.receive(.gossip, from: "d", updates: [.alive(s.id("c"), incarnation: 1, meta: MembershipStory.meta("c"))])
        #expect(s.state("c") == .suspect)
        _ = s.receive(.gossip, from: "c", updates: [.alive(s.id("c"), incarnation: 2, meta: MembershipStory.meta("c"))])
        #expect(s.state("c") == .alive)
    }

    @Test("news older than what we know is ignored")
    func staleIgnored() {
        var s = MembershipStory()
        _ = s.receive(.gossip, from: "c", updates: [.alive(s.id("c"), incarnation: 4, meta: MembershipStory.meta("c"))])
        _ = s.receive(.gossip, from: "b", updates: [.suspect(s.id("c"), incarnation: 3, from: s.id("b"))])
        #expect(s.state("c") == .alive)
        _ = s.receive(.gossip, from: "b", updates: [.dead(s.id("c"), incarnation: 2, from: s.id("b"))])
        #expect(s.state("c") == .alive)
    }

    @Test("Lifeguard: with no confirmations a suspicion lasts the maximum timeout")
    func unconfirmedLastsLong() {
        var settings = Membership.Settings()
        settings.probeOnSuspicion = false
        var s = MembershipStory(settings: settings)
        _ = s.receive(.gossip, from: "b", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("b"))])
        // n = 5: min = 1 s, max = 6 s. (Nobody answers here, so our own probes of c would also
        // confirm it; keep c out of them by answering for everyone else only after the max.)
        for _ in 0..<55 { _ = s.advance(.milliseconds(100)) }
        #expect(s.state("c") == .suspect)
        _ = s.runResponsive(.seconds(10), except: ["c"])
        #expect(s.state("c") == .dead)
    }

    @Test("Lifeguard: independent confirmations bring the timeout down to the minimum")
    func confirmationsShorten() {
        var settings = Membership.Settings()
        settings.probeOnSuspicion = false
        var s = MembershipStory(settings: settings)
        _ = s.receive(.gossip, from: "b", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("b"))])
        // The same suspicion again from the same member is not a confirmation; from others it is.
        let again = s.receive(.gossip, from: "b", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("b"))])
        #expect(!again.allUpdates.contains { _ in true })
        _ = s.receive(.gossip, from: "d", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("d"))])
        _ = s.receive(.gossip, from: "e", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("e"))])
        // Two of the three expected confirmations (k = n - 2 = 3): 6 - 5 × ln 3 / ln 4 ≈ 2.04 s.
        // Then we look for ourselves before declaring anything.
        let before = s.runResponsive(.milliseconds(2000), except: ["c"])
        #expect(!before.pings.contains { $0.target == s.id("c") })
        let at = s.runResponsive(.milliseconds(100), except: ["c"])
        #expect(at.pings.contains { $0.target == s.id("c") })
        #expect(s.state("c") == .suspect)
        // Our own probe fails (direct, then indirect, within one probe interval): dead.
        _ = s.runResponsive(.milliseconds(1100), except: ["c"])
        #expect(s.state("c") == .dead)
    }

    @Test("a node declares a member dead only on its own failed probe, never on others' reports alone")
    func deathNeedsOwnEvidence() {
        var settings = Membership.Settings()
        settings.probeOnSuspicion = false
        var s = MembershipStory(settings: settings)
        _ = s.receive(.gossip, from: "b", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("b"))])
        _ = s.receive(.gossip, from: "d", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("d"))])
        _ = s.receive(.gossip, from: "e", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("e"))])
        // Fully confirmed, but c answers us: it stays a suspect until it refutes.
        _ = s.runResponsive(.seconds(20))
        #expect(s.state("c") == .suspect)
    }

    @Test("hearing of a suspicion, a node probes the suspect itself and tells it (buddy system)")
    func probeOnSuspicion() {
        var s = MembershipStory()
        let d = s.receive(.gossip, from: "b", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("b"))])
        let ping = try! #require(d.sent(s).first { $0.to == "c" })
        #expect(ping.packet.updates.first == .suspect(s.id("c"), incarnation: 1, from: s.id("a")))
    }

    @Test("our own failed probe of a suspect confirms the suspicion")
    func ownProbeConfirms() {
        var s = MembershipStory()
        let d = s.receive(.gossip, from: "b", updates: [.suspect(s.id("c"), incarnation: 1, from: s.id("b"))])
        #expect(d.pings.contains { $0.target == s.id("c") })
        let later = s.run(.seconds(1))
        #expect(later.allUpdates.contains(.suspect(s.id("c"), incarnation: 1, from: s.id("a"))))
    }

    @Test("the suspicion timeout falls from max to min as ln(c+1)/ln(k+1)", arguments: [
        (0, 3, 30.0), (1, 3, 16.0), (2, 3, 7.81), (3, 3, 2.0), (5, 3, 2.0), (0, 0, 2.0),
    ])
    func timeoutFormula(c: Int, k: Int, expected: Double) {
        let t = Membership.suspicionTimeout(confirmations: c, expected: k, min: .seconds(2), max: .seconds(30))
        #expect(abs(t.seconds - expected) < 0.01)
    }
}

@Suite("Membership: joining, leaving, gossip")
struct LifecycleTests {
    @Test("a join is a state exchange with a seed; the reply completes it")
    func join() {
        var a = Membership.Instance(id: NodeID(1), meta: MembershipStory.meta("a"), seed: 1, now: .zero)
        _ = a.start(now: .zero)
        let d = a.join(seeds: ["seed:7770"], now: .zero)
        let sent = d.compactMap { if case .send(let p, .address("seed:7770")) = $0 { p } else { nil } }
        guard case .pushPull(true, false, let records) = sent.first?.message else {
            Issue.record("expected a join push-pull, got \(d)")
            return
        }
        #expect(records.map(\.id) == [NodeID(1)])
        let seedRecord = Membership.Record(id: NodeID(9), meta: MembershipStory.meta("seed"), incarnation: 3, state: .alive)
        let reply = a.onPacket(.init(from: NodeID(9), fromAddress: "seed:7770", message: .pushPull(join: true, reply: true, members: [seedRecord] + records)), now: .zero)
        #expect(reply.contains(.joined(via: NodeID(9))))
        #expect(a.member(NodeID(9))?.state == .alive)
        #expect(a.joinSeeds.isEmpty)
    }

    @Test("a seed refuses a joiner whose name a live member has; the joiner is told why")
    func duplicateName() {
        var s = MembershipStory()
        let joiner = Membership.Record(id: NodeID(500), meta: MembershipStory.meta("b"), incarnation: 1, state: .alive)
        let d = s.a.onPacket(.init(from: NodeID(500), fromAddress: "other:7770", message: .pushPull(join: true, reply: false, members: [joiner])), now: s.now)
        guard case .joinRejected(let reason)? = d.sent(s).first?.packet.message else {
            Issue.record("expected a rejection, got \(d)")
            return
        }
        #expect(reason.contains("'b'") && reason.contains("--name"))
        #expect(s.a.member(NodeID(500)) == nil)

        var j = Membership.Instance(id: NodeID(500), meta: MembershipStory.meta("b"), seed: 1, now: .zero)
        _ = j.join(seeds: ["a:7770"], now: .zero)
        let r = j.onPacket(.init(from: s.id("a"), fromAddress: "a:7770", message: .joinRejected(reason: reason)), now: .zero)
        #expect(r.contains(.joinRejected(reason: reason, by: "a:7770")))
    }

    @Test("a graceful leave is told to the others as 'left', and the node stops probing")
    func leave() {
        var s = MembershipStory()
        let d = s.a.leave(now: s.now)
        let told = Set(d.sent(s).map(\.to))
        #expect(told == ["b", "c", "d", "e"])
        #expect(d.allUpdates.contains(.dead(s.id("a"), incarnation: 1, from: s.id("a"))))
        #expect(s.state("a") == .left)
        #expect(s.run(.seconds(5)).pings.isEmpty)
    }

    @Test("others record a leave as 'left', and a death as 'dead'")
    func leftVersusDead() {
        var s = MembershipStory()
        _ = s.receive(.gossip, from: "b", updates: [.dead(s.id("b"), incarnation: 1, from: s.id("b"))])
        _ = s.receive(.gossip, from: "c", updates: [.dead(s.id("d"), incarnation: 1, from: s.id("c"))])
        #expect(s.state("b") == .left)
        #expect(s.state("d") == .dead)
    }

    @Test("an update is piggybacked a bounded number of times: retransmitMult × ceil(log10(n + 1))")
    func retransmitLimit() {
        var s = MembershipStory()
        let news = Membership.Update.alive(NodeID(77), incarnation: 1, meta: MembershipStory.meta("x"))
        _ = s.receive(.gossip, from: "b", updates: [news])
        var carried = 0
        for _ in 0..<100 {
            carried += s.advance(.milliseconds(100)).allUpdates.filter { $0 == news }.count
        }
        // n = 6 → 4 × 1 = 4.
        #expect(carried == 4)
    }

    @Test("new metadata goes out under a new incarnation")
    func metadata() {
        var s = MembershipStory()
        var m = MembershipStory.meta("a")
        m.cordoned = true
        let d = s.a.updateMeta(m, now: s.now)
        #expect(d.persisted == [2])
        let next = s.run(.milliseconds(300))
        #expect(next.allUpdates.contains(.alive(s.id("a"), incarnation: 2, meta: m)))
    }

    @Test("a full state exchange is answered with ours, and a remote 'dead' only makes us suspect")
    func pushPull() {
        var s = MembershipStory()
        let records = [
            Membership.Record(id: s.id("c"), meta: MembershipStory.meta("c"), incarnation: 1, state: .dead),
            Membership.Record(id: NodeID(88), meta: MembershipStory.meta("z"), incarnation: 2, state: .alive),
        ]
        let d = s.receive(.pushPull(join: false, reply: false, members: records), from: "b")
        #expect(s.state("c") == .suspect)
        #expect(s.a.member(NodeID(88))?.state == .alive)
        guard case .pushPull(false, true, let ours)? = d.sent(s).first(where: { $0.to == "b" })?.packet.message else {
            Issue.record("expected a push-pull reply")
            return
        }
        #expect(ours.count == 6)
    }
}
