import Foundation
import MeshCore

/// What `mesh submit` packs: a git checkout (tracked and untracked-but-not-ignored files, with
/// remote, commit, branch and `git diff --stat HEAD` recorded), or a plain directory.
public struct CodeSnapshot {
    public var provenance: Provenance
    /// Where the command runs, relative to the packed root.
    public var workdir: String
    public var entries: [Archive.Entry]

    public enum Failure: Error, CustomStringConvertible {
        case git(String)
        case midOperation(String)
        case unreadable(String)

        public var description: String {
            switch self {
            case .git(let s): "git: \(s)"
            case .midOperation(let s): "refusing to submit from the middle of a \(s): finish or abort it first, so the job runs on code that exists"
            case .unreadable(let s): s
            }
        }
    }

    /// From `directory` (the submitter's working directory): its git checkout if it is in one,
    /// else the directory itself when `plainDirectory`.
    public static func take(from directory: String, plainDirectory: Bool) throws(Failure) -> CodeSnapshot {
        let cwd = URL(fileURLWithPath: directory).standardizedFileURL.path
        if !plainDirectory, let top = try? git(["rev-parse", "--show-toplevel"], in: cwd).trimmingCharacters(in: .whitespacesAndNewlines), !top.isEmpty {
            let gitDir = (try? git(["rev-parse", "--absolute-git-dir"], in: top).trimmingCharacters(in: .whitespacesAndNewlines)) ?? top + "/.git"
            for (file, what) in [("MERGE_HEAD", "merge"), ("rebase-merge", "rebase"), ("rebase-apply", "rebase"),
                                 ("CHERRY_PICK_HEAD", "cherry-pick"), ("REVERT_HEAD", "revert")]
            where FileManager.default.fileExists(atPath: gitDir + "/" + file) {
                throw .midOperation(what)
            }
            let list = try git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], in: top)
            let files = Set(list.split(separator: "\0").map(String.init))
            var p = Provenance(code: .git)
            p.remote = (try? git(["remote", "get-url", "origin"], in: top))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            p.commit = (try? git(["rev-parse", "HEAD"], in: top))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            p.branch = (try? git(["rev-parse", "--abbrev-ref", "HEAD"], in: top))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            // `git diff HEAD` itself (the bundle has the files; this says what differs from the commit).
            var diff = (try? git(["diff", "HEAD"], in: top)) ?? ""
            if diff.utf8.count > 256 << 10 { diff = String(diff.utf8.prefix(256 << 10))! + "\n[diff truncated at 256 KiB]\n" }
            p.diffSummary = diff
            p.directory = top
            let rel = cwd == top ? "" : String(cwd.dropFirst(top.count + 1))
            return CodeSnapshot(provenance: p, workdir: rel,
                                entries: files.sorted().map { Archive.Entry(path: $0, source: top + "/" + $0) })
        }
        var entries: [Archive.Entry] = []
        guard let e = FileManager.default.enumerator(atPath: cwd) else { throw .unreadable("cannot list \(cwd)") }
        while let sub = e.nextObject() as? String {
            var st = stat()
            if lstat(cwd + "/" + sub, &st) == 0, st.st_mode & S_IFMT == S_IFREG { entries.append(Archive.Entry(path: sub, source: cwd + "/" + sub)) }
        }
        return CodeSnapshot(provenance: Provenance(code: .directory, directory: cwd), workdir: "", entries: entries.sorted { $0.path < $1.path })
    }

    static func git(_ args: [String], in directory: String) throws(Failure) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["git", "-C", directory] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        do { try p.run() } catch { throw .git("cannot run git: \(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw .git(String(decoding: errData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) }
        return String(decoding: data, as: UTF8.self)
    }
}
