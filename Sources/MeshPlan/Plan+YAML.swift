import MeshCore
import Yams

/// Reading a plan file: every problem names its line and what to do.
extension Plan {
    static let topLevelKeys = ["script", "sweep", "default", "stages"] + ResourceOptions.keys

    public static func parse(yaml text: String) throws(PlanError) -> Plan {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw yamlError(error)
        } catch {
            throw PlanError(line: nil, "not YAML: \(error)")
        }
        guard let root, case .mapping(let top) = root else {
            throw PlanError(line: root?.mark?.line ?? 1, "a plan is a mapping with `script:`, `sweep:` and optionally `stages:`")
        }
        var script: (String, Int)?
        var sweepNode: Node?
        var stagesNode: Node?
        var resources = ResourceOptions()
        var resourceNodes: [(String, Node)] = []
        for (k, v) in top {
            let key = try keyName(k)
            switch key {
            case "script":
                guard case .scalar(let s) = v, !s.string.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                    throw PlanError(line: line(v), "`script` is the command to run, as text (use `script: |` for several lines)")
                }
                script = (s.string, line(v))
            case "sweep", "default":
                if sweepNode != nil { throw PlanError(line: line(k), "both `sweep` and `default`: they are two names for the same thing; keep one") }
                sweepNode = v
            case "stages":
                stagesNode = v
            case _ where ResourceOptions.keys.contains(key):
                resourceNodes.append((key, v))
            default:
                throw PlanError(line: line(k), "unknown key '\(key)'\(suggestion(key, topLevelKeys)); a plan has \(topLevelKeys.joined(separator: ", "))")
            }
        }
        for (key, v) in resourceNodes { try setResource(&resources, key, v) }
        guard let (scriptText, scriptLine) = script else { throw PlanError(line: 1, "no `script:`: say what each job runs, e.g. `script: python run.py --lr {lr}`") }

        var fixed: [Value] = []
        var axes: [Axis] = []
        if let sweepNode {
            guard case .mapping(let sweep) = sweepNode else {
                throw PlanError(line: line(sweepNode), "`sweep` is a mapping of names to values (a list makes an axis)")
            }
            for (k, v) in sweep {
                let name = try valueName(k)
                if ResourceOptions.keys.contains(name) {
                    try setResource(&resources, name, v)
                    continue
                }
                switch v {
                case .sequence(let items):
                    guard !items.isEmpty else { throw PlanError(line: line(v), "axis '\(name)' is empty: give it at least one value, or remove it") }
                    var choices: [[Value]] = []
                    var fields: [String]?
                    for item in items {
                        if case .mapping(let m) = item {
                            let values = try fieldValues(name, m)
                            let names = values.map(\.name)
                            if let fields, fields != names {
                                throw PlanError(line: line(item), "every entry of axis '\(name)' must have the same fields (\(fields.map { String($0.dropFirst(name.count + 1)) }.joined(separator: ", ")))")
                            }
                            fields = names
                            choices.append(values)
                        } else {
                            if fields != nil { throw PlanError(line: line(item), "axis '\(name)' mixes mappings and plain values") }
                            choices.append([Value(name, try scalar(item, name), line: line(item))])
                        }
                    }
                    axes.append(Axis(name: name, choices: choices, line: line(k)))
                case .mapping(let m):
                    fixed += try fieldValues(name, m)
                default:
                    fixed.append(Value(name, try scalar(v, name), line: line(v)))
                }
            }
        }

        var stages: [Stage] = []
        if let stagesNode {
            guard case .sequence(let items) = stagesNode, !items.isEmpty else {
                throw PlanError(line: line(stagesNode), "`stages` is a list of mappings, each with a `name`")
            }
            for item in items {
                guard case .mapping(let m) = item else { throw PlanError(line: line(item), "a stage is a mapping with a `name` and its values") }
                var stage = Stage(name: "", line: line(item))
                for (k, v) in m {
                    let name = try valueName(k)
                    if name == "name" {
                        let s = try scalar(v, "name")
                        guard isName(s) else { throw PlanError(line: line(v), "stage name '\(s)' may use only letters, digits, '_' and '-'") }
                        stage.name = s
                        stage.values.append(Value("name", s, line: line(v)))
                    } else if ResourceOptions.keys.contains(name) {
                        try setResource(&stage.resources, name, v)
                    } else if case .sequence = v {
                        throw PlanError(line: line(v), "'\(name)' in a stage is a list: axes belong in `sweep`, stages set single values")
                    } else if case .mapping(let fm) = v {
                        stage.values += try fieldValues(name, fm)
                    } else {
                        stage.values.append(Value(name, try scalar(v, name), line: line(v)))
                    }
                }
                guard !stage.name.isEmpty else { throw PlanError(line: line(item), "this stage has no `name` (other stages refer to it as $(NAME.key))") }
                if stages.contains(where: { $0.name == stage.name }) { throw PlanError(line: line(item), "two stages are named '\(stage.name)'") }
                stages.append(stage)
            }
        }
        return Plan(command: .script(scriptText, line: scriptLine), fixed: fixed, axes: axes, stages: stages, resources: resources)
    }

    // MARK: Pieces

    private static func line(_ n: Node) -> Int { n.mark?.line ?? 0 }

    private static func keyName(_ k: Node) throws(PlanError) -> String {
        guard case .scalar(let s) = k else { throw PlanError(line: line(k), "keys are plain names") }
        return s.string
    }

    private static func valueName(_ k: Node) throws(PlanError) -> String {
        let name = try keyName(k)
        guard isName(name) else { throw PlanError(line: line(k), "'\(name)' is not a value name: use letters, digits, '_' and '-'") }
        return name
    }

    public static func isName(_ s: String) -> Bool {
        !s.isEmpty && s.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }
    }

    private static func scalar(_ n: Node, _ name: String) throws(PlanError) -> String {
        switch n {
        case .scalar(let s): return s.tag.description == "tag:yaml.org,2002:null" || (s.style == .plain && (s.string == "~" || s.string == "null")) ? "" : s.string
        case .alias: throw PlanError(line: line(n), "'\(name)': aliases are not supported; write the value out")
        default: throw PlanError(line: line(n), "'\(name)' must be a single value here")
        }
    }

    private static func fieldValues(_ name: String, _ m: Node.Mapping) throws(PlanError) -> [Value] {
        var values: [Value] = []
        for (k, v) in m {
            let field = try valueName(k)
            values.append(Value("\(name).\(field)", try scalar(v, "\(name).\(field)"), line: line(v)))
        }
        guard !values.isEmpty else { throw PlanError(line: nil, "'\(name)' has an empty mapping") }
        return values
    }

    private static func setResource(_ r: inout ResourceOptions, _ key: String, _ v: Node) throws(PlanError) {
        func int(_ range: ClosedRange<Int>) throws(PlanError) -> Int {
            let s = try scalar(v, key)
            guard let n = Int(s), range.contains(n) else { throw PlanError(line: line(v), "`\(key)` takes a whole number from \(range.lowerBound) to \(range.upperBound), not '\(s)'") }
            return n
        }
        switch key {
        case "class": r.nodeClass = try scalar(v, key)
        case "gpus": r.gpus = try int(0...1024)
        case "slots": r.slots = try int(1...10_000)
        case "retries": r.retries = try int(0...100)
        case "timeout":
            let s = try scalar(v, key)
            guard let seconds = durationSeconds(s), seconds > 0, seconds <= Limits.maxTimeoutSeconds else {
                throw PlanError(line: line(v), "`timeout` takes a duration such as 90s, 30m, 2h or 1h30m, at most \(Limits.maxTimeoutSeconds / 86_400)d, not '\(s)'")
            }
            r.timeoutSeconds = seconds
        case "results":
            var globs: [String] = []
            if case .sequence(let items) = v {
                for i in items { globs.append(try scalar(i, key)) }
            } else {
                globs = [try scalar(v, key)]
            }
            for g in globs where g.isEmpty || g.hasPrefix("/") || g.split(separator: "/").contains("..") {
                throw PlanError(line: line(v), "`results` '\(g)' must be a glob inside the workspace (relative, no '..')")
            }
            r.results = globs
        default: break
        }
    }

    /// `90`, `90s`, `30m`, `2h`, `1h30m`, `1d` → seconds.
    public static func durationSeconds(_ s: String) -> UInt64? {
        if let n = UInt64(s) { return n }
        var total: UInt64 = 0
        var number = ""
        var sawUnit = false
        for c in s {
            if c.isNumber {
                number.append(c)
                continue
            }
            let unit: UInt64
            switch c {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86400
            default: return nil
            }
            guard let n = UInt64(number) else { return nil }
            // (A hostile number must not overflow: beyond any bound is simply not a duration.)
            let (part, o1) = n.multipliedReportingOverflow(by: unit)
            let (sum, o2) = total.addingReportingOverflow(part)
            guard !o1, !o2 else { return nil }
            total = sum
            number = ""
            sawUnit = true
        }
        return number.isEmpty && sawUnit ? total : nil
    }

    private static func yamlError(_ e: YamlError) -> PlanError {
        switch e {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _), .composer(let context, let problem, let mark, _):
            return PlanError(line: mark.line, "not valid YAML: \(context.map { "\($0.text) " } ?? "")\(problem) (column \(mark.column))")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return PlanError(line: context.mark.line, "a key appears twice in one mapping: \(duplicates.sorted().joined(separator: ", "))")
        default:
            return PlanError(line: nil, "not valid YAML: \(e)")
        }
    }

    /// ` (did you mean 'stages'?)` for a near miss.
    static func suggestion(_ word: String, _ known: [String]) -> String {
        let best = known.map { ($0, distance(word.lowercased(), $0)) }.min { $0.1 < $1.1 }
        guard let best, best.1 <= max(2, word.count / 3) else { return "" }
        return " (did you mean '\(best.0)'?)"
    }

    private static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where i <= a.count {
            var previous = row[0]
            row[0] = i
            for j in 1...max(b.count, 1) where j <= b.count {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[b.count]
    }
}
