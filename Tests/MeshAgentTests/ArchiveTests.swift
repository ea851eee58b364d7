import Foundation
import MeshTestSupport
import Testing

@testable import MeshAgent

/// The archive format of code bundles and results, and the blob store that holds them: what
/// goes in comes out, and nothing a crafted archive or chunk says can write outside its target.
@Suite("Archives and blobs")
struct ArchiveTests {
    /// An archive written by hand, entry by entry, as an attacker could.
    func crafted(_ entries: [(kind: Character, path: String, data: [UInt8])], end: Bool = true) -> [UInt8] {
        var out = Array("MESHAR1\n".utf8)
        for e in entries {
            out.append(e.kind.asciiValue!)
            withUnsafeBytes(of: UInt32(e.path.utf8.count).littleEndian) { out += $0 }
            out += Array(e.path.utf8)
            withUnsafeBytes(of: UInt64(e.data.count).littleEndian) { out += $0 }
            out += e.data
        }
        if end { out.append(UInt8(ascii: "e")) }
        return out
    }

    func write(_ bytes: [UInt8], _ path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    @Test("pack and unpack: contents, folders and the executable bit come back; links are left out and named; the hash is the file's")
    func roundTrip() throws {
        let t = try TemporaryDirectory("arch")
        defer { t.remove() }
        let src = t.sub("src")
        try FileManager.default.createDirectory(atPath: src + "/deep/er", withIntermediateDirectories: true)
        try "one".write(toFile: src + "/a.txt", atomically: true, encoding: .utf8)
        try "#!/bin/sh\ntrue\n".write(toFile: src + "/deep/er/run.sh", atomically: true, encoding: .utf8)
        chmod(src + "/deep/er/run.sh", 0o755)
        symlink("/etc/passwd", src + "/link")
        let entries = ["a.txt", "deep/er/run.sh", "link"].map { Archive.Entry(path: $0, source: src + "/" + $0) }
        let packed = try Archive.pack(entries, to: t.sub("a.ar"))
        #expect(packed.skipped == ["link"])
        #expect(try SHA256Hasher.file(t.sub("a.ar")).hash == packed.hash)
        let dest = t.sub("dest")
        mkdir(dest, 0o700)
        let written = try Archive.unpack(t.sub("a.ar"), into: dest)
        #expect(written == ["a.txt", "deep/er/run.sh"])
        #expect(try String(contentsOfFile: dest + "/deep/er/run.sh", encoding: .utf8) == "#!/bin/sh\ntrue\n")
        #expect(access(dest + "/deep/er/run.sh", X_OK) == 0 && access(dest + "/a.txt", X_OK) != 0)
        #expect(try Archive.read(t.sub("a.ar"), entry: "a.txt", offset: 1)?.data == Array("ne".utf8))
        // Skipping a prefix, as `mesh results` skips the log.
        let only = t.sub("only")
        mkdir(only, 0o700)
        #expect(try Archive.unpack(t.sub("a.ar"), into: only, skip: ["deep"]) == ["a.txt"])
    }

    @Test("crafted paths are refused and nothing is written outside the target", arguments: [
        "../escape", "/tmp/abs-escape", "a/../../escape", "./x", "a//b", "",
    ])
    func unsafePaths(path: String) throws {
        let t = try TemporaryDirectory("arch")
        defer { t.remove() }
        let dest = t.sub("dest/inner")
        try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
        try write(crafted([("f", path, Array("pwned".utf8))]), t.sub("bad.ar"))
        #expect(throws: ArchiveError.self) { try Archive.unpack(t.sub("bad.ar"), into: dest) }
        #expect(!FileManager.default.fileExists(atPath: t.sub("dest/escape")))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/abs-escape"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dest).isEmpty)
    }

    @Test("a link planted in the target is not followed; existing files are not overwritten; sizes are capped; a cut archive is an error")
    func hostileTargets() throws {
        let t = try TemporaryDirectory("arch")
        defer { t.remove() }
        let dest = t.sub("dest"), outside = t.sub("outside")
        mkdir(dest, 0o700)
        mkdir(outside, 0o700)
        symlink(outside, dest + "/link")
        try write(crafted([("f", "link/x", Array("pwned".utf8))]), t.sub("via-link.ar"))
        #expect(throws: ArchiveError.unsafePath("link/x")) { try Archive.unpack(t.sub("via-link.ar"), into: dest) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)

        symlink(outside + "/target", dest + "/file-link")
        try write(crafted([("f", "file-link", Array("pwned".utf8))]), t.sub("file-link.ar"))
        #expect(throws: ArchiveError.self) { try Archive.unpack(t.sub("file-link.ar"), into: dest) }
        #expect(!FileManager.default.fileExists(atPath: outside + "/target"))

        try write(crafted([("f", "same", [1]), ("f", "same", [2])]), t.sub("twice.ar"))
        #expect(throws: ArchiveError.unsafePath("same")) { try Archive.unpack(t.sub("twice.ar"), into: dest) }

        try write(crafted([("f", "big", [UInt8](repeating: 7, count: 1000))]), t.sub("big.ar"))
        #expect(throws: ArchiveError.tooLarge(limit: 999)) { try Archive.unpack(t.sub("big.ar"), into: dest, limit: 999) }

        try write(Array(crafted([("f", "cut", [UInt8](repeating: 7, count: 100))]).prefix(40)), t.sub("cut.ar"))
        #expect(throws: ArchiveError.malformed("ends early")) { try Archive.unpack(t.sub("cut.ar"), into: dest) }
        try write(Array("NOTANAR\n".utf8), t.sub("magic.ar"))
        #expect(throws: ArchiveError.malformed("wrong magic")) { try Archive.unpack(t.sub("magic.ar"), into: dest) }
        try write(crafted([("l", "x", [])]), t.sub("kind.ar"))
        #expect(throws: ArchiveError.self) { try Archive.unpack(t.sub("kind.ar"), into: dest) }

        // Packing stops at the limit too.
        try Data(count: 2000).write(to: URL(fileURLWithPath: t.sub("2k")))
        #expect(throws: ArchiveError.tooLarge(limit: 1000)) {
            try Archive.pack([Archive.Entry(path: "2k", source: t.sub("2k"))], to: t.sub("p.ar"), limit: 1000)
        }
    }

    @Test("blobs arrive in order and become visible only when their hash checks out")
    func blobStore() throws {
        let t = try TemporaryDirectory("blob")
        defer { t.remove() }
        let store = try BlobStore(directory: t.sub("blobs"))
        let data = Array("hello, blob".utf8)
        var h = SHA256Hasher()
        h.update(data)
        let hash = h.finish()
        let size = UInt64(data.count)
        #expect(try store.receive(hash: hash, size: size, offset: 0, data: Array(data[0..<5]), limit: 100) == (5, false))
        #expect(!store.has(hash))
        // Out of order: refused, and the partial blob dropped.
        #expect(throws: BlobError.self) { try store.receive(hash: hash, size: size, offset: 7, data: [1], limit: 100) }
        #expect(try store.receive(hash: hash, size: size, offset: 0, data: Array(data[0..<5]), limit: 100) == (5, false))
        #expect(try store.receive(hash: hash, size: size, offset: 5, data: Array(data[5...]), limit: 100) == (size, true))
        #expect(store.has(hash) && store.read(hash, offset: 7, length: 100) == Array("blob".utf8))
        // Already held: complete at once.
        #expect(try store.receive(hash: hash, size: size, offset: 0, data: [], limit: 100) == (size, true))

        let liar = String(repeating: "a", count: 64)
        #expect(throws: BlobError.self) { try store.receive(hash: liar, size: 3, offset: 0, data: [1, 2, 3], limit: 100) }
        #expect(!store.has(liar))
        #expect(throws: BlobError.self) { try store.receive(hash: liar, size: 1000, offset: 0, data: [], limit: 100) }
        #expect(throws: BlobError.self) { try store.receive(hash: "../../etc/passwd", size: 1, offset: 0, data: [1], limit: 100) }
        #expect(store.read("../../etc/passwd", offset: 0, length: 10) == nil)
    }
}
