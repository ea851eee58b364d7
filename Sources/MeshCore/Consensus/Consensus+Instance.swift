extension Consensus {
    /// Timing and batching. Defaults from DESIGN.md §5: heartbeat 100 ms, election timeout
    /// randomised in 1–2 s; tests and simulations scale them down.
    public struct Settings: Sendable {
        public var heartbeatInterval: Duration = .milliseconds(100)
        public var electionTimeoutMin: Duration = .seconds(1)
        public var electionTimeoutMax: Duration = .seconds(2)
        public var preVote = true
        public var checkQuorum = true
        public var maxEntriesPerAppend = 256
        /// About how many bytes of entries go in one append (a frame is at most 16 MiB).
        public var maxBytesPerAppend = 4 << 20
        /// Learners (non-voters) get a heartbeat every this many heartbeat intervals.
        public var learnerHeartbeatEvery = 5
        /// Tell followers of a new commit index at once instead of with the next heartbeat (they
        /// act on committed entries: a worker starts its job when it applies the assignment).
        public var propagateCommits = true

        public init() {}

        public func scaled(_ factor: Double) -> Settings {
            var s = self
            s.heartbeatInterval = heartbeatInterval.scaled(1 / factor)
            s.electionTimeoutMin = electionTimeoutMin.scaled(1 / factor)
            s.electionTimeoutMax = electionTimeoutMax.scaled(1 / factor)
            return s
        }
    }

    /// One node's Raft. Every event is a `mutating func` that returns directives; the shell
    /// carries them out in order (persist is synchronous and comes before the sends that need it).
    public struct Instance: Sendable {
        public let id: NodeID
        public let settings: Settings
        public private(set) var role: Role = .follower
        public private(set) var term: Term
        public private(set) var votedFor: NodeID?
        public private(set) var leader: NodeID?
        public private(set) var commitIndex: Index
        /// Entries handed to the shell in `apply` directives.
        public private(set) var appliedIndex: Index
        /// The latest configuration in the log (Raft applies it as soon as it is appended).
        public private(set) var configuration: Configuration
        /// The most recent snapshot, which a lagging follower is sent.
        public private(set) var snapshot: Snapshot?
        /// As leader: when each member's answer last arrived (whenever it was sent). A node's
        /// attempts are declared lost only when this is older than their lease plus a grace.
        public private(set) var lastContact: [NodeID: Instant] = [:]
        /// As leader or candidate: for each member, the latest of our clocks it has echoed in this
        /// term, i.e. it was in our term at or after that time. A leader whose quorum has not
        /// confirmed it within the election timeout steps down.
        private var confirmed: [NodeID: Instant] = [:]
        /// The latest `clock` received from each peer, echoed back to it.
        private var heardClock: [NodeID: Instant] = [:]
        /// The lease anchor: a time (on our clock) at or after which a coordinator knew of us (a
        /// follower: the leader echoed a packet we sent then; a leader: its quorum confirmed it).
        /// A worker's jobs may run until this plus their lease; the coordinator declares them lost
        /// only after it last heard from the node plus lease plus grace, which is later.
        public private(set) var leaseAnchor: Instant?
        /// As leader: since when.
        public private(set) var leaderSince: Instant?
        /// The highest commit index a leader has told us of (ours, as leader). Our own commit
        /// index stops at the last entry we have, so while catching up it can lag this.
        public private(set) var knownCommit: Index = 0

        /// Everything a leader has said is committed has been applied here: the state is not a
        /// stale prefix. A worker acts on assignments only then: an assignment that is current in
        /// a prefix may already have been declared lost (and given to someone else) further on,
        /// while this node's lease, renewed by the same leader, looks fresh (found by the chaos
        /// harness: a restarted agent started a superseded attempt next to its successor).
        public var caughtUp: Bool { appliedIndex >= Swift.max(knownCommit, commitIndex) }

        var log: Log
        /// Configuration entries in the log, in order, to go back to when a suffix is truncated.
        private var configurations: [(index: Index, configuration: Configuration)]
        private var rng: SeededRandom
        private var electionDeadline: Instant
        /// When we last heard from a leader (or were one). A worker keeps its jobs only while this
        /// is recent (its lease).
        public private(set) var lastLeaderContact: Instant?
        private var nextHeartbeat: Instant
        private var heartbeats = 0
        private var checkQuorumAt: Instant
        private var votes: [NodeID: Bool] = [:]
        private var progress: [NodeID: Progress] = [:]
        private var pendingConfigIndex: Index = 0
        private var transfer: (target: NodeID, deadline: Instant)?
        private var out: [Directive] = []
        private var scheduledTick: Instant?
        private var reported: (role: Role, term: Term, leader: NodeID?)?

        struct Progress: Sendable {
            enum Mode: Sendable { case probe, replicate, snapshot }
            var match: Index = 0
            var next: Index
            var mode: Mode = .probe
            /// When a snapshot went out; it is sent again only if no answer came for a while.
            var snapshotSentAt: Instant?
        }

        public init(id: NodeID, stored: Stored, settings: Settings = .init(), seed: UInt64, now: Instant) {
            self.id = id
            self.settings = settings
            // A term past the bound can only be in a store that an older release let a hostile or
            // broken message raise (it trapped on `term + 1` ever after); every node that took it
            // reads the same bound, and elections go on from there.
            term = Swift.min(stored.hardState.term, Limits.maxTerm - Limits.maxTermStep)
            votedFor = stored.hardState.votedFor
            snapshot = stored.snapshot
            log = Log(snapshotIndex: stored.snapshot?.index ?? 0, snapshotTerm: stored.snapshot?.term ?? 0, entries: stored.entries)
            commitIndex = log.snapshotIndex
            appliedIndex = log.snapshotIndex
            var configs: [(Index, Configuration)] = [(log.snapshotIndex, stored.snapshot?.configuration ?? .empty)]
            for e in stored.entries {
                if case .configuration(let c) = e.payload { configs.append((e.index, c)) }
            }
            configurations = configs
            configuration = configs.last!.1
            rng = SeededRandom(seed: seed)
            electionDeadline = now
            nextHeartbeat = now
            checkQuorumAt = now
            resetElectionTimer(now)
        }

        // MARK: Views

        public var isVoter: Bool { configuration.voters.contains(id) }
        public var lastIndex: Index { log.lastIndex }
        public var lastTerm: Term { log.lastTerm }
        public var isTransferring: Bool { transfer != nil }
        /// We have applied an entry of the current term: our state holds everything committed
        /// before this term began (Raft's leader completeness), so it is no older than what the
        /// current leader knows. A worker acts on the state only from then on (after a restart,
        /// replaying an old log must not start attempts that were long given up on).
        public var hasAppliedCurrentTerm: Bool { appliedIndex > 0 && log.term(at: appliedIndex) == term }

        /// How far each member's log matches the leader's (leader only).
        public var matchIndexes: [NodeID: Index] { progress.mapValues(\.match) }

        public func entry(at index: Index) -> Entry? { log.entry(at: index) }

        /// The configuration in force at `index` (for snapshots).
        public func configuration(at index: Index) -> Configuration {
            configurations.last { $0.index <= index }?.configuration ?? .empty
        }

        // MARK: Events

        /// Schedules the first tick. A node that is the only voter elects itself at once.
        public mutating func start(now: Instant) -> [Directive] {
            if configuration.voters == [id] { campaign(now, transfer: false) }
            return finish(now)
        }

        public mutating func onTick(now: Instant) -> [Directive] {
            if let t = scheduledTick, t <= now { scheduledTick = nil }
            if role == .leader {
                lastLeaderContact = now
                // Check quorum: lead only while a quorum has confirmed us within the election
                // timeout (by echoes, so a leader that was paused or cut off cannot count on
                // answers that were sent long ago).
                let confirmedAt = quorumConfirmed(now)
                if settings.checkQuorum, now - confirmedAt > settings.electionTimeoutMin {
                    becomeFollower(term, leader: nil, now)
                    return finish(now)
                }
                anchorLease(at: confirmedAt)
                if now >= nextHeartbeat {
                    heartbeats += 1
                    for peer in progress.keys.sorted() where configuration.voters.contains(peer) || heartbeats % settings.learnerHeartbeatEvery == 0 {
                        sendAppend(to: peer, now: now)
                    }
                    nextHeartbeat = now + settings.heartbeatInterval
                }
                checkQuorumAt = now + settings.heartbeatInterval
                if let t = transfer, now >= t.deadline { transfer = nil }
            } else if isVoter, now >= electionDeadline {
                campaign(now, transfer: false)
            }
            return finish(now)
        }

        public mutating func onPacket(_ p: Packet, now: Instant) -> [Directive] {
            guard p.to == id, p.from != id else { return finish(now) }
            if let why = impossible(p) {
                out.append(.dropped(p, reason: why))
                return finish(now)
            }
            var p = p
            // `echo` is our own clock coming back: one from our future was never ours, and would
            // confirm a leader or anchor a lease that nobody gave.
            if p.echo > now { p.echo = .zero }
            if p.clock > heardClock[p.from] ?? .zero { heardClock[p.from] = p.clock }
            if role == .leader { lastContact[p.from] = now }
            if p.term > term {
                switch p.message {
                case .preVote, .vote:
                    var force = false
                    if case .vote(_, _, let t) = p.message { force = t }
                    // A leader is always in its own lease; a follower while it hears from one.
                    let inLease = settings.checkQuorum && (role == .leader || (leader != nil
                        && lastLeaderContact.map { now - $0 < settings.electionTimeoutMin } == true))
                    if !force && inLease { return finish(now) }
                default:
                    break
                }
                switch p.message {
                case .preVote:
                    break  // never change our term for a pre-vote
                case .preVoteResponse(granted: true):
                    break  // our own future term, granted
                case .append, .snapshot:
                    becomeFollower(p.term, leader: p.from, now)
                default:
                    becomeFollower(p.term, leader: nil, now)
                }
            } else if p.term < term {
                switch p.message {
                case .append, .snapshot:
                    // A leader of an older term: tell it ours, so it steps down.
                    if settings.checkQuorum || settings.preVote {
                        send(to: p.from, .appendResponse(AppendResult(success: false, index: 0)))
                    }
                case .preVote:
                    send(to: p.from, .preVoteResponse(granted: false))
                default:
                    break
                }
                return finish(now)
            }

            if p.term == term, p.echo > .zero {
                if role == .leader || role == .candidate, p.echo > confirmed[p.from] ?? .zero { confirmed[p.from] = p.echo }
            }
            switch p.message {
            case .preVote(let li, let lt), .vote(let li, let lt, _):
                let isPreVote: Bool = if case .preVote = p.message { true } else { false }
                let canVote = votedFor == p.from || (votedFor == nil && leader == nil) || (isPreVote && p.term > term)
                if canVote && log.isUpToDate(lastIndex: li, lastTerm: lt) {
                    if isPreVote {
                        out.append(.send(Packet(from: id, to: p.from, term: p.term, message: .preVoteResponse(granted: true))))
                    } else {
                        votedFor = p.from
                        persistHardState()
                        resetElectionTimer(now)
                        out.append(.send(Packet(from: id, to: p.from, term: p.term, message: .voteResponse(granted: true))))
                    }
                } else {
                    send(to: p.from, isPreVote ? .preVoteResponse(granted: false) : .voteResponse(granted: false))
                }
            case .preVoteResponse(let granted):
                if role == .preCandidate { tally(p.from, granted, now) }
            case .voteResponse(let granted):
                if role == .candidate { tally(p.from, granted, now) }
            case .append(let prevIndex, let prevTerm, let entries, let commit):
                heardFromLeader(p.from, now)
                anchorLease(at: p.echo)
                handleAppend(from: p.from, prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: commit)
            case .snapshot(let s):
                heardFromLeader(p.from, now)
                anchorLease(at: p.echo)
                handleSnapshot(from: p.from, s)
            case .appendResponse(let r):
                if role == .leader { handleAppendResponse(from: p.from, r, now) }
            case .snapshotResponse(let match):
                if role == .leader, var pr = progress[p.from] {
                    pr.match = Swift.max(pr.match, Swift.min(match, log.lastIndex))
                    pr.next = pr.match + 1
                    pr.mode = .probe
                    progress[p.from] = pr
                    sendAppend(to: p.from, now: now)
                }
            case .timeoutNow:
                if isVoter && role != .leader { campaign(now, transfer: true) }
            }
            return finish(now)
        }

        /// Proposes a command; only the leader takes it. Returns the entry's index.
        public mutating func propose(_ request: ClusterState.Request, now: Instant) -> Result<(index: Index, directives: [Directive]), ProposalError> {
            guard role == .leader else { return .failure(.notLeader(leader)) }
            guard transfer == nil else { return .failure(.transferring) }
            let index = appendAsLeader(.command(request), now)
            return .success((index, finish(now)))
        }

        /// Proposes a new configuration: at most one voter added or removed, one change at a time.
        public mutating func proposeConfiguration(_ new: Configuration, now: Instant) -> Result<(index: Index, directives: [Directive]), ProposalError> {
            guard role == .leader else { return .failure(.notLeader(leader)) }
            guard transfer == nil else { return .failure(.transferring) }
            guard pendingConfigIndex <= commitIndex else { return .failure(.configurationChangePending) }
            let added = new.voters.subtracting(configuration.voters), removed = configuration.voters.subtracting(new.voters)
            guard added.count + removed.count <= 1 else {
                return .failure(.invalidConfiguration("change one voter at a time (adding \(added.count), removing \(removed.count))"))
            }
            guard !new.voters.isEmpty else { return .failure(.invalidConfiguration("a configuration needs a voter")) }
            guard new.voters.contains(id) else {
                return .failure(.invalidConfiguration("the leader cannot remove itself; transfer leadership first"))
            }
            let index = appendAsLeader(.configuration(new), now)
            pendingConfigIndex = index
            return .success((index, finish(now)))
        }

        /// Hands leadership to `target` (on `mesh leave`): catches it up, then tells it to campaign.
        public mutating func transferLeadership(to target: NodeID, now: Instant) -> [Directive] {
            guard role == .leader, target != id, configuration.voters.contains(target), progress[target] != nil else { return finish(now) }
            transfer = (target, now + settings.electionTimeoutMin)
            if progress[target]!.match == log.lastIndex {
                send(to: target, .timeoutNow)
            } else {
                sendAppend(to: target, now: now)
            }
            return finish(now)
        }

        /// The shell saw its connection to the leader drop (the leader's process died and the
        /// kernel closed its sockets): forget the leader and campaign within one heartbeat interval
        /// rather than after the election timeout. PreVote keeps this safe: followers still hearing
        /// from a live leader refuse. The delay is random so that followers who all saw the same
        /// drop do not split the vote; the first one usually wins within a round trip and the rest
        /// hear from it before their own turn.
        public mutating func onLeaderUnreachable(now: Instant) -> [Directive] {
            if role == .follower, leader != nil {
                leader = nil
                lastLeaderContact = nil
                let span = Swift.max(1, settings.heartbeatInterval.nanosecondsClamped)
                electionDeadline = Swift.min(electionDeadline, now + .nanoseconds(Int64(rng.next() % UInt64(span))))
            }
            return finish(now)
        }

        /// Replaces the log up to `index` (applied already) with a snapshot of the state machine.
        public mutating func compact(upTo index: Index, data: [UInt8], now: Instant) -> [Directive] {
            guard index <= appliedIndex, index > log.snapshotIndex, let t = log.term(at: index) else { return finish(now) }
            let s = Snapshot(index: index, term: t, configuration: configuration(at: index), data: data)
            log.compact(upTo: index, term: t)
            configurations.removeAll { $0.index <= index }
            configurations.insert((index, s.configuration), at: 0)
            snapshot = s
            out.append(.persistSnapshot(s, discardLog: false))
            return finish(now)
        }

        // MARK: Elections

        private mutating func campaign(_ now: Instant, transfer: Bool) {
            guard isVoter, term < Limits.maxTerm else { return }
            if settings.preVote && !transfer {
                role = .preCandidate
                leader = nil
                votes = [id: true]
                resetElectionTimer(now)
                for v in configuration.voters.sorted() where v != id {
                    out.append(.send(Packet(from: id, to: v, term: term + 1, message: .preVote(lastIndex: log.lastIndex, lastTerm: log.lastTerm))))
                }
                if votes.count >= configuration.quorum { becomeCandidate(now, transfer: false) }
            } else {
                becomeCandidate(now, transfer: transfer)
            }
        }

        private mutating func becomeCandidate(_ now: Instant, transfer: Bool) {
            guard term < Limits.maxTerm else { return }
            term += 1
            votedFor = id
            role = .candidate
            leader = nil
            confirmed = [:]
            votes = [id: true]
            persistHardState()
            resetElectionTimer(now)
            for v in configuration.voters.sorted() where v != id {
                send(to: v, .vote(lastIndex: log.lastIndex, lastTerm: log.lastTerm, transfer: transfer))
            }
            if votes.count >= configuration.quorum { becomeLeader(now) }
        }

        private mutating func tally(_ from: NodeID, _ granted: Bool, _ now: Instant) {
            guard configuration.voters.contains(from) else { return }
            votes[from] = granted
            let yes = votes.values.filter { $0 }.count, no = votes.values.filter { !$0 }.count
            if yes >= configuration.quorum {
                if role == .preCandidate { becomeCandidate(now, transfer: false) } else { becomeLeader(now) }
            } else if no >= configuration.quorum {
                becomeFollower(term, leader: nil, now)
            }
        }

        private mutating func becomeLeader(_ now: Instant) {
            role = .leader
            leader = id
            leaderSince = now
            lastContact = [:]
            lastLeaderContact = now
            transfer = nil
            progress = [:]
            for m in configuration.members where m != id {
                progress[m] = Progress(next: log.lastIndex + 1)
            }
            nextHeartbeat = now + settings.heartbeatInterval
            checkQuorumAt = now + settings.electionTimeoutMin
            // Entries of earlier terms commit only once one of ours does (Raft §5.4.2).
            _ = appendAsLeader(.noop, now)
            pendingConfigIndex = log.lastIndex
        }

        private mutating func becomeFollower(_ newTerm: Term, leader newLeader: NodeID?, _ now: Instant) {
            if newTerm > term {
                term = newTerm
                votedFor = nil
                persistHardState()
            }
            role = .follower
            leader = newLeader
            progress = [:]
            transfer = nil
            leaderSince = nil
            resetElectionTimer(now)
            if newLeader != nil { lastLeaderContact = now }
        }

        private mutating func heardFromLeader(_ from: NodeID, _ now: Instant) {
            if role != .follower || leader != from { becomeFollower(term, leader: from, now) }
            lastLeaderContact = now
            resetElectionTimer(now)
        }

        private mutating func resetElectionTimer(_ now: Instant) {
            let span = settings.electionTimeoutMax - settings.electionTimeoutMin
            let jitter = span.nanosecondsClamped > 0 ? Int64(rng.next() % UInt64(span.nanosecondsClamped)) : 0
            electionDeadline = now + settings.electionTimeoutMin + .nanoseconds(jitter)
        }

        // MARK: Replication (follower)

        private mutating func handleAppend(from: NodeID, prevIndex: Index, prevTerm: Term, entries: [Entry], commit leaderCommit: Index) {
            knownCommit = Swift.max(knownCommit, leaderCommit)
            if prevIndex < commitIndex {
                // Everything up to our commit index matches the leader's log already.
                send(to: from, .appendResponse(AppendResult(success: true, index: commitIndex)))
                return
            }
            guard log.term(at: prevIndex) == prevTerm else {
                let hint = log.lastIndex(atOrBelow: prevIndex, withTermAtMost: prevTerm)
                send(to: from, .appendResponse(AppendResult(success: false, index: hint.index, hintTerm: hint.term)))
                return
            }
            // Skip what we have; cut our log at the first entry that differs.
            var toAppend: [Entry] = []
            var truncateAfter: Index?
            for (i, e) in entries.enumerated() {
                guard e.index == prevIndex + Index(i) + 1 else { return }  // malformed: ignore
                if let t = log.term(at: e.index) {
                    if t == e.term { continue }
                    guard e.index > commitIndex else { return }  // never rewrite committed entries
                    truncateAfter = e.index - 1
                    toAppend = Array(entries[i...])
                } else {
                    toAppend = Array(entries[i...])
                }
                break
            }
            if let cut = truncateAfter {
                log.truncate(after: cut)
                if configurations.contains(where: { $0.index > cut }) {
                    configurations.removeAll { $0.index > cut }
                    configuration = configurations.last!.configuration
                }
            }
            if !toAppend.isEmpty {
                log.append(toAppend)
                for e in toAppend {
                    if case .configuration(let c) = e.payload {
                        configurations.append((e.index, c))
                        configuration = c
                    }
                }
                out.append(.persist(nil, entries: toAppend, truncateAfter: truncateAfter))
            }
            let lastNew = prevIndex + Index(entries.count)
            commit(to: Swift.min(leaderCommit, lastNew))
            send(to: from, .appendResponse(AppendResult(success: true, index: lastNew)))
        }

        private mutating func handleSnapshot(from: NodeID, _ s: Snapshot) {
            if s.index <= commitIndex {
                send(to: from, .snapshotResponse(matchIndex: commitIndex))
                return
            }
            if log.term(at: s.index) == s.term {
                // We have that entry: the snapshot says it is committed.
                commit(to: s.index)
            } else {
                log = Log(snapshotIndex: s.index, snapshotTerm: s.term)
                configurations = [(s.index, s.configuration)]
                configuration = s.configuration
                commitIndex = s.index
                appliedIndex = s.index
                snapshot = s
                out.append(.persistSnapshot(s, discardLog: true))
                out.append(.restore(s))
            }
            send(to: from, .snapshotResponse(matchIndex: s.index))
        }

        private mutating func commit(to index: Index) {
            guard index > commitIndex else { return }
            commitIndex = Swift.min(index, log.lastIndex)
            if commitIndex > appliedIndex {
                out.append(.apply(log.entries((appliedIndex + 1)...commitIndex)))
                appliedIndex = commitIndex
            }
        }

        // MARK: Replication (leader)

        private mutating func appendAsLeader(_ payload: Payload, _ now: Instant) -> Index {
            let e = Entry(index: log.lastIndex + 1, term: term, payload: payload)
            log.append([e])
            if case .configuration(let c) = payload {
                configurations.append((e.index, c))
                configuration = c
                for m in c.members where m != id && progress[m] == nil { progress[m] = Progress(next: e.index) }
                for m in progress.keys where !c.members.contains(m) { progress[m] = nil }
            }
            // Replicate first, then make our own copy durable: the followers' disks work while
            // ours does (Raft dissertation §10.2.1). The shell finishes the persist before it reads
            // any answer, so we never count ourselves before our own write is done.
            for peer in progress.keys.sorted() { sendAppend(to: peer, now: now) }
            out.append(.persist(nil, entries: [e], truncateAfter: nil))
            maybeCommit(now)
            return e.index
        }

        private mutating func sendAppend(to peer: NodeID, now: Instant) {
            guard var pr = progress[peer] else { return }
            if pr.next <= log.snapshotIndex {
                guard let s = snapshot else { return }
                if pr.mode == .snapshot, let at = pr.snapshotSentAt, now - at < settings.electionTimeoutMin { return }
                pr.mode = .snapshot
                pr.snapshotSentAt = now
                progress[peer] = pr
                send(to: peer, .snapshot(s))
                return
            }
            let prevIndex = pr.next - 1
            guard let prevTerm = log.term(at: prevIndex) else { return }
            let entries = pr.mode == .snapshot ? [] : log.entries(from: pr.next, max: settings.maxEntriesPerAppend, maxBytes: settings.maxBytesPerAppend)
            send(to: peer, .append(prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: commitIndex))
            if pr.mode == .replicate, let last = entries.last {
                pr.next = last.index + 1
                progress[peer] = pr
            }
        }

        private mutating func handleAppendResponse(from: NodeID, _ r: AppendResult, _ now: Instant) {
            guard var pr = progress[from] else { return }
            if r.success {
                if r.index > pr.match {
                    pr.match = Swift.min(r.index, log.lastIndex)
                }
                pr.next = Swift.max(pr.next, pr.match + 1)
                pr.mode = .replicate
                progress[from] = pr
                maybeCommit(now)
                if let t = transfer, t.target == from, pr.match == log.lastIndex { send(to: from, .timeoutNow) }
                if pr.next <= log.lastIndex { sendAppend(to: from, now: now) }
            } else {
                guard r.index >= pr.match else { return }  // a stale rejection
                var probe = r.index
                if r.hintTerm > 0 { probe = log.lastIndex(atOrBelow: r.index, withTermAtMost: r.hintTerm).index }
                pr.mode = .probe
                pr.next = Swift.max(Swift.min(pr.next - 1, probe + 1), pr.match + 1)
                progress[from] = pr
                sendAppend(to: from, now: now)
            }
        }

        /// Commits the highest index a quorum of voters has, if it is of our term.
        private mutating func maybeCommit(_ now: Instant) {
            guard role == .leader else { return }
            let matches = configuration.voters.map { $0 == id ? log.lastIndex : (progress[$0]?.match ?? 0) }.sorted(by: >)
            guard matches.count >= configuration.quorum else { return }
            let candidate = matches[configuration.quorum - 1]
            if candidate > commitIndex, log.term(at: candidate) == term {
                commit(to: candidate)
                if settings.propagateCommits { for peer in progress.keys.sorted() { sendAppend(to: peer, now: now) } }
            }
        }

        // MARK: Helpers

        /// Why no correct node could have sent `p` (it is dropped unread), or nil. A term more
        /// than `Limits.maxTermStep` above every term we know (ours, our log's) cannot come from an
        /// election we missed; indexes and terms past `Limits.maxTerm`/`maxIndex` would overflow
        /// our arithmetic; a leader never sends entries or a snapshot of a later term than its own.
        /// Raft stays safe whatever is dropped: a lost message is within its fault model. Liveness
        /// needs only that correct nodes' messages pass, which they do while terms stay in bounds.
        private func impossible(_ p: Packet) -> String? {
            let known = Swift.min(Swift.max(term, log.lastTerm), Limits.maxTerm)
            guard p.term <= Limits.maxTerm, p.term <= known + Limits.maxTermStep else {
                return "term \(p.term) is beyond any election since term \(known)"
            }
            let bounded = { (i: Index) in i <= Limits.maxIndex }
            switch p.message {
            case .preVote(let li, let lt), .vote(let li, let lt, _):
                guard bounded(li), lt <= p.term else { return "a vote request with last index \(li), term \(lt)" }
            case .append(let prevIndex, let prevTerm, let entries, let commit):
                guard bounded(prevIndex), bounded(commit), prevTerm <= p.term,
                      entries.allSatisfy({ bounded($0.index) && $0.term <= p.term }) else {
                    return "an append at \(prevIndex) (term \(prevTerm), commit \(commit)) with entries out of bounds"
                }
            case .appendResponse(let r):
                guard bounded(r.index), r.hintTerm <= Limits.maxTerm else { return "an append response at \(r.index)" }
            case .snapshot(let s):
                guard bounded(s.index), s.term <= p.term else { return "a snapshot at \(s.index), term \(s.term)" }
            case .snapshotResponse(let m):
                guard bounded(m) else { return "a snapshot response at \(m)" }
            case .preVoteResponse, .voteResponse, .timeoutNow:
                break
            }
            return nil
        }

        /// The latest time a quorum of voters (us included, at `now`) has confirmed us.
        private func quorumConfirmed(_ now: Instant) -> Instant {
            let times = configuration.voters.map { $0 == id ? now : (confirmed[$0] ?? .zero) }.sorted(by: >)
            guard configuration.quorum >= 1, times.count >= configuration.quorum else { return .zero }
            return times[configuration.quorum - 1]
        }

        private mutating func anchorLease(at t: Instant) {
            if t > .zero, t > leaseAnchor ?? .zero { leaseAnchor = t }
        }

        private mutating func send(to: NodeID, _ message: Message) {
            out.append(.send(Packet(from: id, to: to, term: term, message: message)))
        }

        private mutating func persistHardState() {
            out.append(.persist(HardState(term: term, votedFor: votedFor), entries: [], truncateAfter: nil))
        }

        private mutating func finish(_ now: Instant) -> [Directive] {
            if reported?.role != role || reported?.term != term || reported?.leader != leader {
                reported = (role, term, leader)
                out.append(.roleChanged(role, term: term, leader: leader))
            }
            var next: Instant
            if role == .leader {
                next = Swift.min(nextHeartbeat, checkQuorumAt)
                if let t = transfer { next = Swift.min(next, t.deadline) }
            } else {
                next = isVoter ? electionDeadline : now + settings.electionTimeoutMax
            }
            next = Swift.max(next, now)
            if scheduledTick != next {
                scheduledTick = next
                out.append(.scheduleTick(at: next))
            }
            // Stamp what goes out: our clock, and the latest clock we have from the receiver.
            for i in out.indices {
                if case .send(var p) = out[i] {
                    p.clock = now
                    p.echo = heardClock[p.to] ?? .zero
                    out[i] = .send(p)
                }
            }
            defer { out.removeAll(keepingCapacity: true) }
            return out
        }
    }
}
