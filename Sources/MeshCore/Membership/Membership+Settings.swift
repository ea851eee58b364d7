extension Membership {
    /// The protocol's timing and fan-out. Defaults follow memberlist's LAN profile where DESIGN.md
    /// is silent, tightened for the mesh's detection target (a dead host confirmed in ~3 s).
    public struct Settings: Sendable {
        /// One member is probed per interval (scaled by the local health multiplier).
        public var probeInterval: Duration = .seconds(1)
        /// How long a direct ping waits for its ack before indirect probes start.
        public var probeTimeout: Duration = .milliseconds(500)
        /// Members asked to probe indirectly (k in SWIM).
        public var indirectChecks = 3
        /// Minimum suspicion timeout = `suspicionMult` × max(1, log10(n)) × `probeInterval`.
        public var suspicionMult = 1.0
        /// The timeout starts at `suspicionMaxMult` × the minimum and falls to the minimum as
        /// independent confirmations arrive (Lifeguard).
        public var suspicionMaxMult = 6.0
        /// Confirmations after which the suspicion timeout reaches its minimum.
        public var suspicionConfirmations = 3
        /// A node that hears of a suspicion probes the suspect itself (with probability
        /// min(1, 2k / n)), so that a dead member's confirmations come within one probe, and a live
        /// one hears that it is suspected (and refutes) at once.
        public var probeOnSuspicion = true
        /// An update is piggybacked on `retransmitMult` × ceil(log10(n + 1)) messages.
        public var retransmitMult = 4
        /// Pending gossip goes to `gossipFanout` random members every `gossipInterval`.
        public var gossipInterval: Duration = .milliseconds(200)
        public var gossipFanout = 3
        public var maxUpdatesPerPacket = 16
        /// A full state exchange with a random live member.
        public var pushPullInterval: Duration = .seconds(30)
        /// A state exchange with a random dead member, so that a healed partition reconverges.
        public var reconnectInterval: Duration = .seconds(10)
        public var joinRetryInterval: Duration = .seconds(2)
        /// Lifeguard's local health multiplier goes from 0 to `maxLocalHealth` - 1.
        public var maxLocalHealth = 8
        /// A relay sends a nack when the target has not answered within this share of the timeout.
        public var nackRatio = 0.8
        /// Dead and left members are forgotten after this long.
        public var deadRetention: Duration = .seconds(24 * 3600)

        public init() {}

        /// Settings scaled for tests and simulations: everything `factor` times faster.
        public func scaled(_ factor: Double) -> Settings {
            var s = self
            s.probeInterval = probeInterval.scaled(1 / factor)
            s.probeTimeout = probeTimeout.scaled(1 / factor)
            s.gossipInterval = gossipInterval.scaled(1 / factor)
            s.pushPullInterval = pushPullInterval.scaled(1 / factor)
            s.reconnectInterval = reconnectInterval.scaled(1 / factor)
            s.joinRetryInterval = joinRetryInterval.scaled(1 / factor)
            return s
        }
    }
}
