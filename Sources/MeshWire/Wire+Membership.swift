import MeshCore

/// Membership packets on the wire. Decoding validates everything a peer could get wrong (or
/// forge): unknown kinds, missing metadata, oversized names and lists are `WireError.malformed`.
extension Wire {
    /// Limits on what a packet may carry.
    public enum Limits {
        public static let maxUpdates = 64
        public static let maxRecords = 20_000
        public static let maxLabels = 64
        public static let maxText = 256
    }

    public static func encode(_ packet: Membership.Packet, requestID: UInt64 = 0) -> [UInt8] {
        encode(.gossip(wire(packet)), requestID: requestID)
    }

    public static func wire(_ p: Membership.Packet) -> WireGossipPacket {
        var w = WireGossipPacket()
        w.from = p.from.rawValue
        w.fromAddress = p.fromAddress
        w.updates = p.updates.map(wire)
        switch p.message {
        case .ping(let seq, let target):
            w.message = .ping(.with { $0.seq = seq; $0.target = target.rawValue })
        case .ack(let seq):
            w.message = .ack(.with { $0.seq = seq })
        case .pingReq(let seq, let target, let address, let wantNack):
            w.message = .pingReq(.with { $0.seq = seq; $0.target = target.rawValue; $0.address = address; $0.wantNack = wantNack })
        case .nack(let seq):
            w.message = .nack(.with { $0.seq = seq })
        case .gossip:
            w.message = .gossip(WireGossipOnly())
        case .pushPull(let join, let reply, let members):
            w.message = .pushPull(.with { $0.join = join; $0.reply = reply; $0.members = members.map(wire) })
        case .joinRejected(let reason):
            w.message = .joinRejected(.with { $0.reason = reason })
        }
        return w
    }

    public static func wire(_ u: Membership.Update) -> WireMemberUpdate {
        var w = WireMemberUpdate()
        w.node = u.node.rawValue
        w.incarnation = u.incarnation
        switch u {
        case .alive(_, _, let meta):
            w.kind = .alive
            w.meta = wire(meta)
        case .suspect(_, _, let from):
            w.kind = .suspect
            w.from = from.rawValue
        case .dead(_, _, let from):
            w.kind = .dead
            w.from = from.rawValue
        }
        return w
    }

    public static func wire(_ r: Membership.Record) -> WireMemberRecord {
        var w = WireMemberRecord()
        w.node = r.id.rawValue
        w.incarnation = r.incarnation
        w.meta = wire(r.meta)
        w.state = switch r.state {
        case .alive: .alive
        case .suspect: .suspect
        case .dead: .dead
        case .left: .left
        }
        return w
    }

    public static func wire(_ m: Membership.Meta) -> WireMemberMeta {
        var w = WireMemberMeta()
        w.name = m.name
        w.address = m.address
        w.nodeClass = m.nodeClass
        w.labels = m.labels
        w.slots = UInt32(clamping: m.slots)
        w.cpus = UInt32(clamping: m.cpus)
        w.memoryMb = UInt64(clamping: m.memoryMB)
        w.gpus = UInt32(clamping: m.gpus)
        w.gpuModel = m.gpuModel
        w.version = m.version
        w.protocolVersion = m.protocolVersion
        w.cordoned = m.cordoned
        w.setup = m.setup
        return w
    }

    // MARK: Decoding

    public static func packet(_ w: WireGossipPacket) throws(WireError) -> Membership.Packet {
        guard w.from != 0 else { throw .malformed("gossip packet without a sender") }
        try text(w.fromAddress, "sender address")
        guard w.updates.count <= Limits.maxUpdates else { throw .malformed("\(w.updates.count) updates in one packet") }
        let message: Membership.Message
        switch w.message {
        case .ping(let p)?:
            guard p.target != 0 else { throw .malformed("ping without a target") }
            message = .ping(seq: p.seq, target: NodeID(p.target))
        case .ack(let a)?:
            message = .ack(seq: a.seq)
        case .pingReq(let r)?:
            guard r.target != 0 else { throw .malformed("ping-req without a target") }
            try text(r.address, "ping-req address")
            message = .pingReq(seq: r.seq, target: NodeID(r.target), address: r.address, wantNack: r.wantNack)
        case .nack(let n)?:
            message = .nack(seq: n.seq)
        case .gossip?:
            message = .gossip
        case .pushPull(let pp)?:
            guard pp.members.count <= Limits.maxRecords else { throw .malformed("\(pp.members.count) records in a state exchange") }
            var records: [Membership.Record] = []
            records.reserveCapacity(pp.members.count)
            for r in pp.members { records.append(try record(r)) }
            message = .pushPull(join: pp.join, reply: pp.reply, members: records)
        case .joinRejected(let j)?:
            message = .joinRejected(reason: String(j.reason.prefix(1000)))
        case nil:
            throw .malformed("gossip packet without a message")
        }
        var updates: [Membership.Update] = []
        updates.reserveCapacity(w.updates.count)
        for u in w.updates { updates.append(try update(u)) }
        return Membership.Packet(from: NodeID(w.from), fromAddress: w.fromAddress, message: message, updates: updates)
    }

    public static func update(_ w: WireMemberUpdate) throws(WireError) -> Membership.Update {
        guard w.node != 0 else { throw .malformed("update without a node") }
        guard w.incarnation <= MeshCore.Limits.maxIncarnation else { throw .malformed("incarnation \(w.incarnation) out of bounds") }
        switch w.kind {
        case .alive:
            guard w.hasMeta else { throw .malformed("alive update without metadata") }
            return .alive(NodeID(w.node), incarnation: w.incarnation, meta: try meta(w.meta))
        case .suspect:
            guard w.from != 0 else { throw .malformed("suspect update without its source") }
            return .suspect(NodeID(w.node), incarnation: w.incarnation, from: NodeID(w.from))
        case .dead:
            guard w.from != 0 else { throw .malformed("dead update without its source") }
            return .dead(NodeID(w.node), incarnation: w.incarnation, from: NodeID(w.from))
        case .unspecified, .UNRECOGNIZED:
            throw .malformed("update of unknown kind")
        }
    }

    public static func record(_ w: WireMemberRecord) throws(WireError) -> Membership.Record {
        guard w.node != 0, w.hasMeta else { throw .malformed("member record without a node or metadata") }
        guard w.incarnation <= MeshCore.Limits.maxIncarnation else { throw .malformed("incarnation \(w.incarnation) out of bounds") }
        let state: Membership.State
        switch w.state {
        case .alive: state = .alive
        case .suspect: state = .suspect
        case .dead: state = .dead
        case .left: state = .left
        case .unspecified, .UNRECOGNIZED: throw .malformed("member record of unknown state")
        }
        return Membership.Record(id: NodeID(w.node), meta: try meta(w.meta), incarnation: w.incarnation, state: state)
    }

    public static func meta(_ w: WireMemberMeta) throws(WireError) -> Membership.Meta {
        guard !w.name.isEmpty else { throw .malformed("member without a name") }
        for (what, t) in [("name", w.name), ("address", w.address), ("class", w.nodeClass), ("GPU model", w.gpuModel), ("version", w.version), ("setup", w.setup)] {
            try text(t, what)
        }
        guard w.labels.count <= Limits.maxLabels else { throw .malformed("\(w.labels.count) labels") }
        for (k, v) in w.labels {
            try text(k, "label name")
            try text(v, "label value")
        }
        var meta = Membership.Meta(
            name: w.name, address: w.address, nodeClass: w.nodeClass, labels: w.labels, slots: Int(w.slots),
            cpus: Int(w.cpus), memoryMB: Int(clamping: w.memoryMb), gpus: Int(w.gpus), gpuModel: w.gpuModel,
            version: w.version, protocolVersion: w.protocolVersion, cordoned: w.cordoned)
        meta.setup = w.setup
        return meta
    }

    private static func text(_ t: String, _ what: String) throws(WireError) {
        guard t.utf8.count <= Limits.maxText else { throw .malformed("\(what) longer than \(Limits.maxText) bytes") }
    }
}

extension Membership.State {
    public init(_ w: WireMemberState) {
        self = switch w {
        case .alive: .alive
        case .suspect: .suspect
        case .dead: .dead
        case .left: .left
        default: .dead
        }
    }
}
