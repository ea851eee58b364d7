import Foundation
import GRDB
import MeshCore
import MeshWire

/// The agent's durable Raft state in SQLite (`state.db`, WAL, `synchronous=FULL`): term and vote,
/// the log, and the latest snapshot. Every write is one transaction that is on disk when the call
/// returns, which is what "persist before send" needs.
final class RaftStore: Sendable {
    let path: String
    private let db: DatabaseQueue

    /// Opens (creating if needed) and checks the store. A store that cannot be read or fails its
    /// integrity check is an error that names the file; the file is left as it is.
    init(path: String) throws(StoreError) {
        self.path = path
        // The log holds every job's environment: 0600, and so are the -wal and -shm files (SQLite
        // gives them the database's mode when it makes them; older ones are tightened).
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd >= 0 {
            fchmod(fd, 0o600)
            close(fd)
        }
        for file in [path + "-wal", path + "-shm"] { chmod(file, 0o600) }
        var config = Configuration()
        config.label = "mesh.state"
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            db = try DatabaseQueue(path: path, configuration: config)
        } catch {
            throw .unreadable(path, Self.reason(error))
        }
        do {
            let check = try db.read { try String.fetchOne($0, sql: "PRAGMA quick_check") }
            guard check == "ok" else { throw StoreError.corrupt(path, check ?? "no answer") }
            try Self.migrator.migrate(db)
            for file in [path + "-wal", path + "-shm"] { chmod(file, 0o600) }
        } catch let e as StoreError {
            throw e
        } catch {
            throw .corrupt(path, Self.reason(error))
        }
    }

    private static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE hard_state (id INTEGER PRIMARY KEY CHECK (id = 1), term INTEGER NOT NULL, voted_for INTEGER);
                CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, entry BLOB NOT NULL);
                CREATE TABLE snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL, term INTEGER NOT NULL,
                                       configuration BLOB NOT NULL, data BLOB NOT NULL);
                """)
        }
        return m
    }

    /// Everything, for the start of the agent. Nil hard state: a new, empty store.
    func load() throws(StoreError) -> Consensus.Stored? {
        do {
            return try db.read { db -> Consensus.Stored? in
                guard let hs = try Row.fetchOne(db, sql: "SELECT term, voted_for FROM hard_state WHERE id = 1") else { return nil }
                let voted: Int64? = hs["voted_for"]
                let hardState = Consensus.HardState(term: UInt64(bitPattern: hs["term"]), votedFor: voted.map { NodeID(UInt64(bitPattern: $0)) })
                var snapshot: Consensus.Snapshot?
                if let s = try Row.fetchOne(db, sql: "SELECT idx, term, configuration, data FROM snapshot WHERE id = 1") {
                    let configBytes: Data = s["configuration"], data: Data = s["data"]
                    snapshot = Consensus.Snapshot(
                        index: UInt64(bitPattern: s["idx"]), term: UInt64(bitPattern: s["term"]),
                        configuration: try Wire.configuration(bytes: [UInt8](configBytes)), data: [UInt8](data))
                }
                var entries: [Consensus.Entry] = []
                let rows = try Row.fetchCursor(db, sql: "SELECT idx, entry FROM log WHERE idx > ? ORDER BY idx", arguments: [Int64(bitPattern: snapshot?.index ?? 0)])
                var expected = (snapshot?.index ?? 0) + 1
                while let row = try rows.next() {
                    let bytes: Data = row["entry"]
                    let e = try Wire.entry(bytes: [UInt8](bytes))
                    guard e.index == expected, UInt64(bitPattern: row["idx"]) == e.index else {
                        throw StoreError.corrupt("", "log entry \(e.index) where \(expected) was expected")
                    }
                    entries.append(e)
                    expected += 1
                }
                return Consensus.Stored(hardState: hardState, snapshot: snapshot, entries: entries)
            }
        } catch let e as StoreError {
            if case .corrupt(_, let why) = e { throw .corrupt(path, why) }
            throw e
        } catch {
            throw .corrupt(path, Self.reason(error))
        }
    }

    /// One durable write: the hard state, a truncated suffix, appended entries.
    func persist(_ hardState: Consensus.HardState?, entries: [Consensus.Entry], truncateAfter: Consensus.Index?) throws(StoreError) {
        do {
            try db.write { db in
                if let hs = hardState {
                    try db.execute(
                        sql: "INSERT INTO hard_state (id, term, voted_for) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET term = excluded.term, voted_for = excluded.voted_for",
                        arguments: [Int64(bitPattern: hs.term), hs.votedFor.map { Int64(bitPattern: $0.rawValue) }])
                }
                if let cut = truncateAfter {
                    try db.execute(sql: "DELETE FROM log WHERE idx > ?", arguments: [Int64(bitPattern: cut)])
                }
                for e in entries {
                    try db.execute(
                        sql: "INSERT OR REPLACE INTO log (idx, term, entry) VALUES (?, ?, ?)",
                        arguments: [Int64(bitPattern: e.index), Int64(bitPattern: e.term), Data(Wire.encode(e))])
                }
            }
        } catch {
            throw .write(path, Self.reason(error))
        }
    }

    /// A snapshot, replacing the log up to its index (or all of it, when installed from a leader).
    func persistSnapshot(_ s: Consensus.Snapshot, discardLog: Bool) throws(StoreError) {
        do {
            try db.write { db in
                try db.execute(
                    sql: "INSERT OR REPLACE INTO snapshot (id, idx, term, configuration, data) VALUES (1, ?, ?, ?, ?)",
                    arguments: [Int64(bitPattern: s.index), Int64(bitPattern: s.term), Data(Wire.encode(s.configuration)), Data(s.data)])
                if discardLog {
                    try db.execute(sql: "DELETE FROM log")
                } else {
                    try db.execute(sql: "DELETE FROM log WHERE idx <= ?", arguments: [Int64(bitPattern: s.index)])
                }
            }
        } catch {
            throw .write(path, Self.reason(error))
        }
    }

    private static func reason(_ error: any Error) -> String {
        if let e = error as? DatabaseError { return e.message ?? "\(e.resultCode)" }
        return "\(error)"
    }
}

/// What can go wrong with `state.db`.
public enum StoreError: UserFacingError, Equatable {
    case unreadable(String, String)
    case corrupt(String, String)
    case write(String, String)

    public var exitCode: Int32 { ExitStatus.error }

    public var description: String {
        switch self {
        case .unreadable(let path, let why):
            "cannot open the state database \(path): \(why). The file is left as it is; move it away to start this node over (it then rejoins the mesh as new)"
        case .corrupt(let path, let why):
            "the state database \(path) is damaged (\(why)). The agent will not start from it and has not changed it; move it away to start this node over"
        case .write(let path, let why):
            "cannot write the state database \(path): \(why)"
        }
    }
}
