import Foundation
import Logging
import MeshCore
import MeshTransport

/// The agent's directory (`$MESH_HOME`, else `~/.mesh`): the cluster key, the local socket, the
/// lock that keeps a second agent out, and (later) the state database.
public struct DataDirectory: Sendable, Equatable, CustomStringConvertible {
    public let path: String

    public init(path: String) {
        // Keep paths short and absolute: the ipc socket path must fit in 107 bytes.
        self.path = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// `explicit` (from `--data-dir`), else `$MESH_HOME`, else `~/.mesh`.
    public static func resolve(_ explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> DataDirectory {
        if let explicit, !explicit.isEmpty { return DataDirectory(path: expandTilde(explicit, environment)) }
        if let home = environment["MESH_HOME"], !home.isEmpty { return DataDirectory(path: expandTilde(home, environment)) }
        return DataDirectory(path: homeDirectory(environment) + "/.mesh")
    }

    public var description: String { path }
    public var keyFile: String { path + "/cluster.key" }
    public var socketPath: String { path + "/agent.sock" }
    public var endpointFile: String { path + "/agent.endpoint" }
    public var lockFile: String { path + "/agent.pid" }
    public var logFile: String { path + "/agent.log" }
    public var nodeIDFile: String { path + "/node.id" }
    public var incarnationFile: String { path + "/incarnation" }
    /// The agents it joined through (`--join`), one per line.
    public var seedsFile: String { path + "/seeds" }
    public var stateDatabase: String { path + "/state.db" }

    public var localAddress: AgentAddress { .ipc(path: socketPath) }

    /// Creates the directory (and parents) with mode 0700, or checks that an existing one is a
    /// writable directory, tightening it to 0700 if others could read it (the returned warning
    /// says so): it holds the key, the log (with jobs' environments) and their outputs.
    @discardableResult
    public func create() throws(AgentError) -> String? {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw .dataDirectory(path, "it exists and is not a directory") }
            var st = stat()
            if stat(path, &st) == 0, st.st_uid == geteuid(), st.st_mode & 0o077 != 0 {
                guard chmod(path, 0o700) == 0 else { throw .dataDirectory(path, "cannot make it private (mode 0700): \(String(cString: strerror(errno)))") }
                guard access(path, W_OK | X_OK) == 0 else { throw .dataDirectory(path, String(cString: strerror(errno))) }
                return "the data directory \(path) was readable by other users (mode \(String(st.st_mode & 0o777, radix: 8))); it is now 0700"
            }
        } else {
            do {
                try FileManager.default.createDirectory(
                    atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw .dataDirectory(path, Self.reason(error))
            }
        }
        guard access(path, W_OK | X_OK) == 0 else { throw .dataDirectory(path, String(cString: strerror(errno))) }
        return nil
    }

    /// Refuses a directory whose node.id says the host was a member while its state.db is missing
    /// or empty (SQLite would take an empty file for a new database): the node would come back
    /// with no log and no memory of its votes. With `rejoinAsNew` the old identity is moved
    /// aside and the agent starts as a new member.
    public func checkState(rejoinAsNew: Bool, logger: Logger) throws(AgentError) {
        guard FileManager.default.fileExists(atPath: nodeIDFile) else { return }
        var st = stat()
        if stat(stateDatabase, &st) == 0, st.st_size > 0 { return }
        guard rejoinAsNew else { throw .lostState(path) }
        let suffix = ".old-\(Int(Date().timeIntervalSince1970))"
        for file in [nodeIDFile, stateDatabase, stateDatabase + "-wal", stateDatabase + "-shm", incarnationFile]
        where FileManager.default.fileExists(atPath: file) {
            guard rename(file, file + suffix) == 0 else { throw .dataDirectory(path, "cannot move \(file) aside: \(String(cString: strerror(errno)))") }
        }
        logger.warning("starting over as a new member: the old node id and state are kept as *\(suffix)")
    }

    public var hasKey: Bool { FileManager.default.fileExists(atPath: keyFile) }

    /// Writes the key with mode 0600, refusing to replace one that exists, and syncs it to disk.
    public func writeKey(_ secret: ClusterSecret) throws(AgentError) {
        let fd = open(keyFile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == EEXIST { throw .alreadyInitialised(path) }
            throw .dataDirectory(path, "cannot create \(keyFile): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let text = Array((secret.text + "\n").utf8)
        let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == text.count, fsync(fd) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(keyFile)
            throw .dataDirectory(path, "cannot write \(keyFile): \(why)")
        }
        syncDirectory()
    }

    /// Reads the cluster key; refuses one that other users can read.
    public func readKey() throws(AgentError) -> ClusterSecret {
        var st = stat()
        guard stat(keyFile, &st) == 0 else {
            if errno == ENOENT { throw .noClusterKey(path) }
            throw .badClusterKey(keyFile, String(cString: strerror(errno)))
        }
        if st.st_mode & 0o077 != 0 {
            throw .keyPermissions(keyFile, mode: st.st_mode & 0o777)
        }
        guard let text = try? String(contentsOfFile: keyFile, encoding: .utf8) else {
            throw .badClusterKey(keyFile, "it is not readable text")
        }
        do {
            return try ClusterSecret(text: text)
        } catch {
            throw .badClusterKey(keyFile, error.description)
        }
    }

    /// Takes the directory's agent lock (an exclusive `flock` on `agent.pid`, which then holds our
    /// pid), so two agents never share a data directory.
    public func lock() throws(AgentError) -> DirectoryLock {
        let fd = open(lockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .dataDirectory(path, "cannot open \(lockFile): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder = (try? String(contentsOfFile: lockFile, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            throw .alreadyRunning(path, pid: holder.flatMap { Int32($0) })
        }
        ftruncate(fd, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return DirectoryLock(fd: fd)
    }

    /// The pid of the agent holding the directory's lock, or nil if none does. Only probes the
    /// lock (shared, non-blocking); writes nothing.
    public func lockHolder() -> Int32? {
        let fd = open(lockFile, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        let text = (try? String(contentsOfFile: lockFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.flatMap { Int32($0) } ?? -1
    }

    /// Replaces `file` atomically with `contents`: written to a temporary name, synced, renamed.
    public func writeAtomically(_ file: String, _ contents: String) throws(AgentError) {
        let tmp = file + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .dataDirectory(path, "cannot write \(file): \(String(cString: strerror(errno)))") }
        let bytes = Array(contents.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(tmp, file) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(tmp)
            throw .dataDirectory(path, "cannot write \(file): \(why)")
        }
        syncDirectory()
    }

    /// This host's node id: made once (64 random bits) and kept, so that a restarted agent is the
    /// same member of the mesh.
    public func loadOrCreateNodeID() throws(AgentError) -> NodeID {
        if let text = try? String(contentsOfFile: nodeIDFile, encoding: .utf8) {
            guard let id = NodeID(hex: text.trimmingCharacters(in: .whitespacesAndNewlines)), id.rawValue != 0 else {
                throw .dataDirectory(path, "\(nodeIDFile) does not hold a node id (16 hex digits); remove it to make a new one")
            }
            return id
        }
        var id = NodeID(0)
        while id.rawValue == 0 { id = NodeID(UInt64.random(in: .min ... .max)) }
        try writeAtomically(nodeIDFile, id.description + "\n")
        return id
    }

    /// The incarnation the agent last published (0 if none).
    public func readIncarnation() -> UInt64 {
        (try? String(contentsOfFile: incarnationFile, encoding: .utf8))
            .flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
    }

    public func writeIncarnation(_ value: UInt64) throws(AgentError) {
        try writeAtomically(incarnationFile, "\(value)\n")
    }

    private func syncDirectory() {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }

    private static func reason(_ error: any Error) -> String {
        if let e = error as? CocoaError, let u = e.userInfo[NSUnderlyingErrorKey] as? NSError,
           u.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(u.code)))
        }
        return (error as NSError).localizedDescription
    }

    private static func homeDirectory(_ env: [String: String]) -> String {
        if let h = env["HOME"], !h.isEmpty { return h }
        if let pw = getpwuid(getuid()), let dir = pw.pointee.pw_dir { return String(cString: dir) }
        return "/tmp"
    }

    private static func expandTilde(_ p: String, _ env: [String: String]) -> String {
        if p == "~" { return homeDirectory(env) }
        if p.hasPrefix("~/") { return homeDirectory(env) + p.dropFirst(1) }
        return p
    }
}

/// An exclusive lock on a data directory, released when the process exits or `release()` is called.
public final class DirectoryLock: Sendable {
    private let fd: Int32
    init(fd: Int32) { self.fd = fd }
    /// Unlocks before closing: a child forked by another thread may share the open file
    /// description until it execs, and `close` alone would leave the lock held until then.
    public func release() {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
