extension Membership {
    /// One node's side of the membership protocol, as a value: every event is a `mutating func
    /// on…` that returns what the shell must do. It never reads a clock or a random source of its
    /// own, so the simulator can run hundreds of instances from one seed.
    public struct Instance: Sendable {
        public let settings: Settings
        public let id: NodeID
        public private(set) var meta: Meta
        public private(set) var incarnation: UInt64
        /// Every member this node knows, itself included.
        public private(set) var members: [NodeID: Member] = [:]
        /// Lifeguard's local health multiplier, 0 (healthy) to `maxLocalHealth` - 1: probe
        /// intervals and timeouts are scaled by it + 1.
        public private(set) var localHealth = 0
        public private(set) var hasLeft = false
        /// Seeds we are joining through, until one answers.
        public private(set) var joinSeeds: [String] = []

        private var rng: SeededRandom
        private var nextSeq: UInt32 = 0
        private var probeOrder: [NodeID] = []
        private var probeIndex = 0
        private var probes: [UInt32: Probe] = [:]
        private var relays: [UInt32: Relay] = [:]
        private var suspicions: [NodeID: Suspicion] = [:]
        private var broadcasts = Broadcasts()
        private var nextProbeAt: Instant
        private var nextGossipAt: Instant
        private var nextPushPullAt: Instant
        private var nextReconnectAt: Instant
        private var nextJoinAttemptAt: Instant?
        private var scheduledTick: Instant?
        private var out: [Directive] = []
        /// Active members other than us, sorted: kept up to date on every state change, so that
        /// choosing random members does not scan the whole table.
        private var others: [NodeID] = []

        struct Probe: Sendable {
            var target: NodeID
            var startedAt: Instant
            var indirect = false
            var deadline: Instant
            var expectedNacks = 0
            var nacks = 0
        }

        /// An indirect probe we carry out for another member.
        struct Relay: Sendable {
            var requester: Destination
            var requesterSeq: UInt32
            var nackAt: Instant?
            var expiresAt: Instant
        }

        /// A node that starts with `incarnation` (one above the last it persisted, after a restart).
        public init(id: NodeID, meta: Meta, incarnation: UInt64 = 1, settings: Settings = .init(), seed: UInt64, now: Instant) {
            self.id = id
            self.meta = meta
            self.incarnation = incarnation
            self.settings = settings
            rng = SeededRandom(seed: seed)
            // Stagger the first probe so that nodes started together do not probe in lockstep.
            nextProbeAt = now + settings.probeInterval.scaled(Double(rng.next() % 1000) / 1000)
            nextGossipAt = now + settings.gossipInterval
            nextPushPullAt = now + settings.pushPullInterval.scaled(0.5 + Double(rng.next() % 1000) / 1000)
            nextReconnectAt = now + settings.reconnectInterval
            members[id] = Member(id: id, meta: meta, incarnation: incarnation, state: .alive, stateSince: now)
        }

        // MARK: Views

        /// Members sorted by name, then id.
        public var memberList: [Member] {
            members.values.sorted { ($0.meta.name, $0.id) < ($1.meta.name, $1.id) }
        }

        /// Alive and suspect members, this node included.
        public var activeCount: Int { others.count + (members[id]!.state.isActive ? 1 : 0) }

        public func member(_ id: NodeID) -> Member? { members[id] }

        /// The timers the instance is waiting on, for diagnosing a stalled run.
        public var debugDescription: String {
            "probes \(probes.map { "\($0.key):\($0.value.target) ind=\($0.value.indirect) dl=\($0.value.deadline)" }) "
                + "relays \(relays.map { "\($0.key): nack=\(String(describing: $0.value.nackAt)) exp=\($0.value.expiresAt)" }) "
                + "suspicions \(suspicions.map { "\($0.key): c=\($0.value.confirmations) own=\(String(describing: $0.value.ownFailureAt)) dl=\($0.value.deadline)" }) "
                + "next probe \(nextProbeAt) gossip \(nextGossipAt) pp \(nextPushPullAt) rc \(nextReconnectAt) join \(String(describing: nextJoinAttemptAt)) sched \(String(describing: scheduledTick))"
        }

        /// Alive and suspect members other than this node, by id.
        public var activePeers: [NodeID] { others }

        // MARK: Events

        /// Publishes this node (persist the incarnation, schedule the first tick).
        public mutating func start(now: Instant) -> [Directive] {
            emit(.persistIncarnation(incarnation))
            broadcasts.add(.alive(id, incarnation: incarnation, meta: meta))
            return finish(now)
        }

        /// Adds members this node already knows of without gossiping them: for starting a simulation
        /// or a test from a mesh that has converged. Unknown ids only; this node is skipped.
        public mutating func preload(_ records: [Record], now: Instant) {
            for r in records where r.id != id && members[r.id] == nil {
                members[r.id] = Member(id: r.id, meta: r.meta, incarnation: r.incarnation, state: r.state, stateSince: now)
                if r.state.isActive { others.insert(r.id, at: others.partitioningIndex { $0 >= r.id }) }
            }
        }

        /// Starts joining through seed addresses; retried until one answers or refuses.
        public mutating func join(seeds: [String], now: Instant) -> [Directive] {
            joinSeeds = seeds.filter { $0 != meta.address }
            if !joinSeeds.isEmpty { nextJoinAttemptAt = now }
            tickJoin(now)
            return finish(now)
        }

        public mutating func onTick(now: Instant) -> [Directive] {
            // The shell's timer fired (it is not an extra, early tick): a new one is always needed.
            if let t = scheduledTick, t <= now { scheduledTick = nil }
            tickProbes(now)
            tickRelays(now)
            tickSuspicions(now)
            if !hasLeft {
                if now >= nextProbeAt {
                    probeNext(now)
                    nextProbeAt = now + scaled(settings.probeInterval)
                    forgetTheLongDead(now)
                }
                if now >= nextPushPullAt {
                    pushPull(now)
                    nextPushPullAt = now + settings.pushPullInterval
                }
                if now >= nextReconnectAt {
                    reconnect(now)
                    nextReconnectAt = now + settings.reconnectInterval
                }
                tickJoin(now)
            }
            if now >= nextGossipAt {
                gossip(now)
                nextGossipAt = now + settings.gossipInterval
            }
            return finish(now)
        }

        public mutating func onPacket(_ packet: Packet, now: Instant) -> [Directive] {
            guard !hasLeft, packet.from != id else { return finish(now) }
            if members[packet.from] != nil { members[packet.from]!.lastHeard = now }
            for u in packet.updates { apply(u, now) }
            let sender = Destination.node(packet.from, address: packet.fromAddress)
            switch packet.message {
            case .ping(let seq, let target):
                // A ping for another id reached a restarted node at the same address: no answer.
                if target == id { send(.ack(seq: seq), to: sender, now) }
            case .ack(let seq):
                if let p = probes.removeValue(forKey: seq) {
                    if !p.indirect { adjustHealth(-1) }
                    // It answered: whatever the gossip says, it is not dead yet. Start its
                    // suspicion over and wait for its refutation.
                    if var s = suspicions[p.target] {
                        s.startedAt = now
                        s.ownFailureAt = nil
                        suspicions[p.target] = s
                    }
                }
                if let r = relays.removeValue(forKey: seq) {
                    send(.ack(seq: r.requesterSeq), to: r.requester, now)
                }
            case .pingReq(let seq, let target, let address, let wantNack):
                let mine = newSeq()
                send(.ping(seq: mine, target: target), to: .node(target, address: address), now)
                relays[mine] = Relay(
                    requester: sender, requesterSeq: seq,
                    nackAt: wantNack ? now + settings.probeTimeout.scaled(settings.nackRatio) : nil,
                    expiresAt: now + settings.probeInterval)
            case .nack(let seq):
                if probes[seq]?.indirect == true { probes[seq]!.nacks += 1 }
            case .gossip:
                break
            case .pushPull(let join, let reply, let theirs):
                if join, let conflict = nameConflict(for: packet.from, in: theirs) {
                    send(.joinRejected(reason: conflict), to: sender, now, piggyback: false)
                    return finish(now)
                }
                merge(theirs, from: packet.from, now)
                if !reply {
                    send(.pushPull(join: join, reply: true, members: records(excludingLeft: false)), to: sender, now, piggyback: false)
                } else if !joinSeeds.isEmpty {
                    joinSeeds = []
                    nextJoinAttemptAt = nil
                    emit(.joined(via: packet.from))
                }
            case .joinRejected(let reason):
                if !joinSeeds.isEmpty {
                    joinSeeds = []
                    nextJoinAttemptAt = nil
                    emit(.joinRejected(reason: reason, by: packet.fromAddress))
                }
            }
            return finish(now)
        }

        /// The shell saw an established connection to a member drop (its process died, or its host
        /// closed the connection): probe it now rather than at its turn.
        public mutating func onConnectionLost(_ node: NodeID, now: Instant) -> [Directive] {
            if !hasLeft, let m = members[node], m.state == .alive, !probes.values.contains(where: { $0.target == node }) {
                startProbe(node, now)
            }
            return finish(now)
        }

        /// Publishes new metadata under a new incarnation.
        public mutating func updateMeta(_ newMeta: Meta, now: Instant) -> [Directive] {
            guard newMeta != meta, !hasLeft else { return finish(now) }
            meta = newMeta
            incarnation += 1
            emit(.persistIncarnation(incarnation))
            members[id]!.meta = meta
            members[id]!.incarnation = incarnation
            broadcasts.add(.alive(id, incarnation: incarnation, meta: meta))
            return finish(now)
        }

        /// Leaves gracefully: tells up to `fanout` live members at once, then keeps gossiping the
        /// news (but no longer probes or answers) until the shell stops.
        public mutating func leave(now: Instant, fanout: Int = 8) -> [Directive] {
            guard !hasLeft else { return finish(now) }
            let update = Update.dead(id, incarnation: incarnation, from: id)
            apply(update, now)
            hasLeft = true
            probes.removeAll()
            relays.removeAll()
            joinSeeds = []
            for target in randomMembers(fanout, excluding: [], now: now) {
                send(.gossip, to: destination(target), now, extra: [update])
            }
            return finish(now)
        }

        // MARK: Probing

        private mutating func probeNext(_ now: Instant) {
            var checked = 0
            while checked <= others.count {
                if probeIndex >= probeOrder.count {
                    probeOrder = others
                    probeOrder.shuffle(using: &rng)
                    probeIndex = 0
                    if probeOrder.isEmpty { return }
                }
                let target = probeOrder[probeIndex]
                probeIndex += 1
                checked += 1
                if let m = members[target], m.state.isActive, !probes.values.contains(where: { $0.target == target }) {
                    startProbe(target, now)
                    return
                }
            }
        }

        private mutating func startProbe(_ target: NodeID, _ now: Instant) {
            guard let m = members[target] else { return }
            let seq = newSeq()
            // Lifeguard's buddy system: a suspect hears that it is suspected from those who probe it.
            var extra: [Update] = []
            if m.state == .suspect { extra.append(.suspect(target, incarnation: m.incarnation, from: id)) }
            send(.ping(seq: seq, target: target), to: destination(m), now, extra: extra)
            probes[seq] = Probe(target: target, startedAt: now, deadline: now + scaled(settings.probeTimeout))
        }

        private mutating func tickProbes(_ now: Instant) {
            for seq in probes.keys.sorted() {
                guard var p = probes[seq], p.deadline <= now else { continue }
                guard let target = members[p.target], target.state.isActive else {
                    probes[seq] = nil
                    continue
                }
                if !p.indirect {
                    let helpers = randomMembers(settings.indirectChecks, excluding: [p.target], now: now, aliveOnly: true)
                    for h in helpers {
                        send(.pingReq(seq: seq, target: p.target, address: target.meta.address, wantNack: true), to: destination(h), now)
                    }
                    p.indirect = true
                    p.expectedNacks = helpers.count
                    p.deadline = Swift.max(p.startedAt + scaled(settings.probeInterval), now + settings.probeTimeout)
                    probes[seq] = p
                } else {
                    probes[seq] = nil
                    // Lifeguard: with helpers, a missing nack says the trouble is ours; without
                    // any, every failed probe counts against our own health.
                    adjustHealth(p.expectedNacks > 0 ? Swift.max(0, p.expectedNacks - p.nacks) : 1)
                    apply(.suspect(p.target, incarnation: target.incarnation, from: id), now)
                }
            }
        }

        private mutating func tickRelays(_ now: Instant) {
            for seq in relays.keys.sorted() {
                guard let r = relays[seq] else { continue }
                if let at = r.nackAt, at <= now {
                    send(.nack(seq: r.requesterSeq), to: r.requester, now, piggyback: false)
                    relays[seq]!.nackAt = nil
                }
                if r.expiresAt <= now { relays[seq] = nil }
            }
        }

        // MARK: Suspicion

        private mutating func tickSuspicions(_ now: Instant) {
            for (node, s) in suspicions.sorted(by: { $0.key < $1.key }) where s.deadline <= now {
                guard let m = members[node], m.state == .suspect, m.incarnation == s.incarnation else {
                    suspicions[node] = nil
                    continue
                }
                if !hasFreshFailure(s, now), !hasLeft {
                    // The wait is over, but all we have are others' reports or an old failure of
                    // our own: look again first (the suspect may have refuted in a burst of gossip
                    // that missed us). A failure confirms; an answer starts the suspicion over.
                    if !probes.values.contains(where: { $0.target == node }) { startProbe(node, now) }
                    continue
                }
                suspicions[node] = nil
                apply(.dead(node, incarnation: s.incarnation, from: id), now)
            }
        }

        private func hasFreshFailure(_ s: Suspicion, _ now: Instant) -> Bool {
            guard let at = s.ownFailureAt else { return false }
            return now - at <= s.min + scaled(settings.probeInterval)
        }

        private func suspicionBounds() -> (min: Duration, max: Duration, expected: Int) {
            let n = activeCount
            let scale = Swift.max(1, log10(Double(Swift.max(1, n))))
            let min = settings.probeInterval.scaled(settings.suspicionMult * scale)
            let expected = n - 2 < settings.suspicionConfirmations ? Swift.max(0, n - 2) : settings.suspicionConfirmations
            return (min, min.scaled(settings.suspicionMaxMult), expected)
        }

        // MARK: Applying updates (SWIM's rules, as memberlist has them)

        private mutating func apply(_ update: Update, _ now: Instant) {
            switch update {
            case .alive(let node, let inc, let newMeta): applyAlive(node, inc, newMeta, now)
            case .suspect(let node, let inc, let from): applySuspect(node, inc, from, now)
            case .dead(let node, let inc, let from): applyDead(node, inc, from, now)
            }
        }

        private mutating func applyAlive(_ node: NodeID, _ inc: UInt64, _ newMeta: Meta, _ now: Instant) {
            if node == id {
                // Someone holds a newer or different picture of us (we restarted, or were
                // declared dead): speak up with a higher incarnation.
                if inc > incarnation || (inc == incarnation && newMeta != meta) { refute(above: inc) }
                return
            }
            if let m = members[node] {
                // Only the member raises its incarnation, so a higher one is newer news; an equal
                // one cannot clear a suspicion (that takes a refutation).
                guard inc > m.incarnation else { return }
                let previous = m.state
                suspicions[node] = nil
                members[node]!.incarnation = inc
                members[node]!.meta = newMeta
                if previous != .alive {
                    members[node]!.state = .alive
                    members[node]!.stateSince = now
                }
                emit(.memberChanged(members[node]!, previous: previous))
            } else {
                members[node] = Member(id: node, meta: newMeta, incarnation: inc, state: .alive, stateSince: now)
                // A newcomer goes to a random place in the part of the probe order still to come.
                let lo = Swift.min(probeIndex, probeOrder.count)
                probeOrder.insert(node, at: lo + Int(rng.next() % UInt64(probeOrder.count - lo + 1)))
                emit(.memberChanged(members[node]!, previous: nil))
            }
            broadcasts.add(.alive(node, incarnation: inc, meta: newMeta))
        }

        /// Someone still spreads a suspicion or death of ours that we have refuted: say again that
        /// we are alive, so that the refutation rides on our next packets (our ack, above all, to
        /// whoever probes us because it still suspects us).
        private mutating func reannounce() {
            let current = Update.alive(id, incarnation: incarnation, meta: meta)
            if !broadcasts.contains(current) { broadcasts.add(current) }
        }

        private mutating func applySuspect(_ node: NodeID, _ inc: UInt64, _ from: NodeID, _ now: Instant) {
            if node == id, inc < incarnation, !hasLeft { return reannounce() }
            guard let m = members[node], inc >= m.incarnation else { return }
            if node == id {
                if !hasLeft {
                    refute(above: inc)
                    adjustHealth(1)
                }
                return
            }
            switch m.state {
            case .suspect:
                guard inc == m.incarnation else { return }
                if from == id { suspicions[node]?.ownFailureAt = now }
                if suspicions[node]?.confirm(from) == true {
                    broadcasts.add(.suspect(node, incarnation: inc, from: from))
                }
            case .alive:
                let bounds = suspicionBounds()
                var s = Suspicion(incarnation: inc, startedAt: now, confirmers: [from], confirmations: 0,
                                  expected: bounds.expected, min: bounds.min, max: bounds.max)
                s.ownFailureAt = from == id ? now : nil
                suspicions[node] = s
                members[node]!.incarnation = inc
                members[node]!.state = .suspect
                members[node]!.stateSince = now
                emit(.memberChanged(members[node]!, previous: .alive))
                broadcasts.add(.suspect(node, incarnation: inc, from: from))
                // Confirm (or clear) it ourselves, unless we are the one who suspects.
                if settings.probeOnSuspicion, from != id, !hasLeft,
                   rng.chance(Double(2 * Swift.max(1, bounds.expected)) / Double(Swift.max(1, activeCount - 2))),
                   !probes.values.contains(where: { $0.target == node }) {
                    startProbe(node, now)
                }
            case .dead, .left:
                break
            }
        }

        private mutating func applyDead(_ node: NodeID, _ inc: UInt64, _ from: NodeID, _ now: Instant) {
            if node == id, inc < incarnation, from != id, !hasLeft { return reannounce() }
            guard let m = members[node], inc >= m.incarnation else { return }
            if node == id {
                if from == id {
                    // Our own leave.
                    if m.state != .left {
                        members[id]!.state = .left
                        members[id]!.stateSince = now
                        emit(.memberChanged(members[id]!, previous: m.state))
                        broadcasts.add(.dead(id, incarnation: inc, from: id))
                    }
                } else if !hasLeft {
                    refute(above: inc)
                }
                return
            }
            guard m.state.isActive || (m.state == .dead && from == node) else { return }
            suspicions[node] = nil
            let state: State = from == node ? .left : .dead
            members[node]!.incarnation = inc
            members[node]!.state = state
            members[node]!.stateSince = now
            emit(.memberChanged(members[node]!, previous: m.state))
            broadcasts.add(.dead(node, incarnation: inc, from: from))
        }

        private mutating func refute(above inc: UInt64) {
            incarnation = Swift.min(Swift.max(incarnation, inc), Limits.maxIncarnation) + 1
            members[id]!.incarnation = incarnation
            emit(.persistIncarnation(incarnation))
            broadcasts.add(.alive(id, incarnation: incarnation, meta: meta))
        }

        private mutating func adjustHealth(_ delta: Int) {
            localHealth = Swift.min(Swift.max(0, localHealth + delta), settings.maxLocalHealth - 1)
        }

        // MARK: Gossip and state exchange

        private mutating func gossip(_ now: Instant) {
            guard !broadcasts.isEmpty else { return }
            for target in randomMembers(settings.gossipFanout, excluding: [], now: now) {
                let updates = broadcasts.take(max: settings.maxUpdatesPerPacket, limit: retransmitLimit)
                if updates.isEmpty { break }
                out.append(.send(Packet(from: id, fromAddress: meta.address, message: .gossip, updates: updates), to: destination(target)))
            }
        }

        private mutating func pushPull(_ now: Instant) {
            guard let target = randomMembers(1, excluding: [], now: now).first else { return }
            send(.pushPull(join: false, reply: false, members: records(excludingLeft: false)), to: destination(target), now, piggyback: false)
        }

        /// Talks to a random dead member: if the partition that made it "dead" has healed, the
        /// exchange brings both sides together again.
        private mutating func reconnect(_ now: Instant) {
            let dead = members.values.filter { $0.state == .dead }.map(\.id).sorted()
            guard !dead.isEmpty else { return }
            let target = dead[Int(rng.next() % UInt64(dead.count))]
            send(.pushPull(join: false, reply: false, members: records(excludingLeft: false)), to: destination(members[target]!), now, piggyback: false)
        }

        private mutating func tickJoin(_ now: Instant) {
            guard let at = nextJoinAttemptAt, at <= now, !joinSeeds.isEmpty else { return }
            for seed in joinSeeds {
                send(.pushPull(join: true, reply: false, members: records(excludingLeft: true)), to: .address(seed), now, piggyback: false)
            }
            nextJoinAttemptAt = now + settings.joinRetryInterval
        }

        private func records(excludingLeft: Bool) -> [Record] {
            members.values.filter { !excludingLeft || $0.state != .left }.sorted { $0.id < $1.id }.map(\.record)
        }

        /// Merges a remote full state. A remote "dead" becomes a suspicion here, credited to the
        /// sender (we may still reach that member), as in memberlist; "left" is final.
        private mutating func merge(_ records: [Record], from sender: NodeID, _ now: Instant) {
            for r in records {
                switch r.state {
                case .alive: applyAlive(r.id, r.incarnation, r.meta, now)
                case .suspect, .dead:
                    applySuspect(r.id, r.incarnation, sender, now)
                case .left:
                    if members[r.id] == nil, r.id != id { continue }
                    applyDead(r.id, r.incarnation, r.id, now)
                }
            }
        }

        private func nameConflict(for joiner: NodeID, in records: [Record]) -> String? {
            guard let theirs = records.first(where: { $0.id == joiner }) else {
                return "the join request does not describe the joining node"
            }
            if joiner == id {
                return "node id \(joiner) is this member's own: was a data directory copied from another host? Give each host its own data directory"
            }
            if let other = members.values.first(where: { $0.id != joiner && $0.state.isActive && $0.meta.name == theirs.meta.name }) {
                return "the name '\(theirs.meta.name)' belongs to a live member at \(other.meta.address) (node \(other.id)); give this host another name with --name"
            }
            return nil
        }

        private mutating func forgetTheLongDead(_ now: Instant) {
            for m in members.values where !m.state.isActive && m.id != id && now - m.stateSince > settings.deadRetention {
                members[m.id] = nil
                suspicions[m.id] = nil
                broadcasts.remove(m.id)
            }
        }

        // MARK: Helpers

        private var retransmitLimit: Int {
            settings.retransmitMult * Swift.max(1, Int(log10(Double(activeCount + 1)).rounded(.up)))
        }

        private func scaled(_ d: Duration) -> Duration { d.scaled(Double(localHealth + 1)) }

        private mutating func newSeq() -> UInt32 {
            nextSeq &+= 1
            return nextSeq
        }

        private func destination(_ m: Member) -> Destination { .node(m.id, address: m.meta.address) }

        /// Up to `count` distinct random active members other than us and `excluding`.
        private mutating func randomMembers(_ count: Int, excluding: Set<NodeID>, now: Instant, aliveOnly: Bool = false) -> [Member] {
            func eligible(_ m: Member) -> Bool { !excluding.contains(m.id) && (!aliveOnly || m.state == .alive) }
            guard count > 0, !others.isEmpty else { return [] }
            if others.count <= count + excluding.count + 2 {
                var all = others.compactMap { members[$0] }.filter(eligible)
                if all.count <= count { return all }
                all.shuffle(using: &rng)
                return Array(all.prefix(count))
            }
            var chosen: [Member] = []
            var seen: Set<NodeID> = []
            var attempts = 0
            while chosen.count < count, attempts < count * 8 {
                attempts += 1
                let candidate = others[Int(rng.next() % UInt64(others.count))]
                guard seen.insert(candidate).inserted, let m = members[candidate], eligible(m) else { continue }
                chosen.append(m)
            }
            return chosen
        }

        private mutating func send(_ message: Message, to: Destination, _ now: Instant, piggyback: Bool = true, extra: [Update] = []) {
            var updates = extra
            if piggyback {
                updates += broadcasts.take(max: settings.maxUpdatesPerPacket - extra.count, limit: retransmitLimit)
            }
            out.append(.send(Packet(from: id, fromAddress: meta.address, message: message, updates: updates), to: to))
        }

        private mutating func emit(_ d: Directive) {
            if case .memberChanged(let m, let previous) = d, m.id != id, m.state.isActive != (previous?.isActive ?? false) {
                if m.state.isActive {
                    others.insert(m.id, at: others.partitioningIndex { $0 >= m.id })
                } else if let i = others.firstIndex(of: m.id) {
                    others.remove(at: i)
                }
            }
            out.append(d)
        }

        /// Hands back the collected directives, with a tick request if the next deadline moved.
        private mutating func finish(_ now: Instant) -> [Directive] {
            let next = nextWakeup(now)
            if scheduledTick != next {
                scheduledTick = next
                out.append(.scheduleTick(at: next))
            }
            defer { out.removeAll(keepingCapacity: true) }
            return out
        }

        private func nextWakeup(_ now: Instant) -> Instant {
            var t = hasLeft ? now + settings.gossipInterval : nextProbeAt
            if !broadcasts.isEmpty { t = Swift.min(t, nextGossipAt) }
            if !hasLeft {
                t = Swift.min(t, nextPushPullAt)
                if members.values.contains(where: { $0.state == .dead }) { t = Swift.min(t, nextReconnectAt) }
                if let j = nextJoinAttemptAt { t = Swift.min(t, j) }
            }
            for p in probes.values { t = Swift.min(t, p.deadline) }
            for r in relays.values {
                t = Swift.min(t, r.nackAt ?? r.expiresAt)
            }
            for (node, s) in suspicions {
                // Past its deadline and waiting for our own probe: that probe's deadline wakes us.
                if s.deadline <= now, !hasFreshFailure(s, now), probes.values.contains(where: { $0.target == node }) { continue }
                t = Swift.min(t, s.deadline)
            }
            return Swift.max(t, now)
        }
    }
}

