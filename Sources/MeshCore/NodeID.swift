/// A node's identity in the mesh: 64 random bits chosen once per data directory and kept across
/// restarts, so a restarted agent is the same member (with a higher incarnation). The name a user
/// gives a node is metadata; two members may not share it while both are alive.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64

    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// Parses the 16 hex digits of `description`.
    public init?(hex: String) {
        guard hex.utf8.count == 16, let v = UInt64(hex, radix: 16) else { return nil }
        rawValue = v
    }

    public static func < (a: NodeID, b: NodeID) -> Bool { a.rawValue < b.rawValue }

    /// 16 hex digits.
    public var description: String {
        let h = String(rawValue, radix: 16)
        return String(repeating: "0", count: 16 - h.count) + h
    }
}
