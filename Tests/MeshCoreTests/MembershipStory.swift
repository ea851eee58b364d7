import MeshCore

/// One node ("a") under test, with peers it already knows ("b", "c", "d", …), driven by hand:
/// each step feeds an event at a time and returns the directives, so a test reads like a story.
struct MembershipStory {
    var a: Membership.Instance
    var now = Instant.zero
    let ids: [String: NodeID]
    var settings: Membership.Settings

    init(peers: [String] = ["b", "c", "d", "e"], settings: Membership.Settings = .init()) {
        var ids: [String: NodeID] = ["a": NodeID(1)]
        for (i, p) in peers.enumerated() { ids[p] = NodeID(UInt64(i + 2)) }
        self.ids = ids
        self.settings = settings
        a = Membership.Instance(id: ids["a"]!, meta: Self.meta("a"), incarnation: 1, settings: settings, seed: 42, now: .zero)
        _ = a.start(now: .zero)
        a.preload(peers.map { Membership.Record(id: ids[$0]!, meta: Self.meta($0), incarnation: 1, state: .alive) }, now: .zero)
    }

    static func meta(_ name: String) -> Membership.Meta {
        Membership.Meta(name: name, address: "\(name):7770", version: "test")
    }

    func id(_ name: String) -> NodeID { ids[name]! }
    func name(_ id: NodeID) -> String { ids.first { $0.value == id }?.key ?? "?" }
    func state(_ name: String) -> Membership.State? { a.member(id(name))?.state }

    mutating func advance(_ d: Duration) -> [Membership.Directive] {
        now = now + d
        return a.onTick(now: now)
    }

    /// Ticks in small steps until `d` has passed; returns everything emitted.
    mutating func run(_ d: Duration, step: Duration = .milliseconds(10)) -> [Membership.Directive] {
        var all: [Membership.Directive] = []
        let end = now + d
        while now < end { all += advance(Swift.min(step, end - now)) }
        return all
    }

    /// Runs for `d` with every peer answering every ping at once, and helpers forwarding acks of
    /// indirect probes (a healthy mesh).
    /// Peers in `except` stay silent (and helpers cannot reach them either).
    mutating func runResponsive(_ d: Duration, except: Set<String> = [], step: Duration = .milliseconds(10)) -> [Membership.Directive] {
        var all: [Membership.Directive] = []
        let end = now + d
        while now < end {
            let out = advance(Swift.min(step, end - now))
            all += out
            for p in out.pings where !except.contains(name(p.target)) { all += receive(.ack(seq: p.seq), from: name(p.target)) }
            for (to, packet) in out.sent(self) {
                if case .pingReq(let seq, let target, _, _) = packet.message, !except.contains(name(target)) {
                    all += receive(.ack(seq: seq), from: to)
                }
            }
        }
        return all
    }

    mutating func receive(_ message: Membership.Message, from: String, updates: [Membership.Update] = []) -> [Membership.Directive] {
        a.onPacket(Membership.Packet(from: id(from), fromAddress: "\(from):7770", message: message, updates: updates), now: now)
    }
}

extension Array where Element == Membership.Directive {
    /// Packets sent, with their destination's name.
    func sent(_ story: MembershipStory) -> [(to: String, packet: Membership.Packet)] {
        compactMap {
            guard case .send(let p, let d) = $0 else { return nil }
            switch d {
            case .node(let id, _): return (story.name(id), p)
            case .address(let a): return (a, p)
            }
        }
    }

    var pings: [(seq: UInt32, target: NodeID)] {
        compactMap { if case .send(let p, _) = $0, case .ping(let s, let t) = p.message { (s, t) } else { nil } }
    }

    var pingReqs: [(seq: UInt32, target: NodeID)] {
        compactMap { if case .send(let p, _) = $0, case .pingReq(let s, let t, _, _) = p.message { (s, t) } else { nil } }
    }

    var allUpdates: [Membership.Update] {
        flatMap { (d: Membership.Directive) -> [Membership.Update] in
            if case .send(let p, _) = d { return p.updates }
            return []
        }
    }

    var changes: [(Membership.Member, Membership.State?)] {
        compactMap { if case .memberChanged(let m, let prev) = $0 { (m, prev) } else { nil } }
    }

    var persisted: [UInt64] {
        compactMap { if case .persistIncarnation(let i) = $0 { i } else { nil } }
    }
}
