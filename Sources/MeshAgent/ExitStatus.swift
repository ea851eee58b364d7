/// The exit codes of every `mesh` command (DESIGN.md §1), from sysexits.h.
public enum ExitStatus {
    public static let ok: Int32 = 0
    public static let error: Int32 = 1
    public static let usage: Int32 = 64
    /// The mesh (or the agent asked) cannot be reached, or refuses our key.
    public static let unreachable: Int32 = 69
    public static let retryLater: Int32 = 75
}

/// An error a user can meet, with the exit code it should end the command with.
public protocol UserFacingError: Error, CustomStringConvertible {
    var exitCode: Int32 { get }
}
