import NixKit
import Testing

/// The host's questions to its own Nix store: which paths it lacks (in command lines that fit), and how
/// parallel substitution is asked for on each Nix version.
@Suite("Nix store validity and substitution options")
struct StoreValidityTests {
    static func path(_ index: Int) -> String {
        let hash = String(repeating: "0123456789abcdfghijklmnpqrsvwxyz".map { $0 }[index % 32], count: 32)
        return "/nix/store/\(hash)-path-\(index)"
    }

    @Test func thePathsAreSplitIntoCommandLinesThatFit() {
        let paths = (0..<1000).map(Self.path)
        let one = StoreValidity.invocations(for: paths)
        #expect(one.count == 1 && one[0] == StoreValidity.fixedArguments + paths)

        let limit = 4096
        let many = StoreValidity.invocations(for: paths, limit: limit)
        #expect(many.count > 10)
        #expect(many.flatMap { $0.dropFirst(StoreValidity.fixedArguments.count) } == paths, "all, once, in order")
        for arguments in many {
            #expect(Array(arguments.prefix(2)) == StoreValidity.fixedArguments)
            let bytes = ([StoreValidity.executable] + arguments).reduce(0) { $0 + $1.utf8.count + 1 + 8 }
            #expect(bytes <= limit)
        }
        #expect(StoreValidity.invocations(for: []).isEmpty)
    }

    /// Any `nix-store` command over many paths (`--realise` with a root and options, `--query --requisites`)
    /// splits them by the same rule, counting its own fixed words.
    @Test func longFixedWordsLeaveLessRoomForPaths() {
        let paths = (0..<200).map(Self.path)
        let fixed = ["nix-store", "--realise", "--add-root", String(repeating: "r", count: 1000)]
        let runs = PathArguments.split(paths, besides: fixed, limit: 4096)
        #expect(runs.flatMap { $0 } == paths, "all, once, in order")
        for run in runs {
            #expect((fixed + run).reduce(0) { $0 + $1.utf8.count + 1 + 8 } <= 4096)
        }
        #expect(runs.count > PathArguments.split(paths, besides: ["nix-store"], limit: 4096).count)
        // A path longer than the whole budget still goes, alone: nix-store, not fleet, says it is too long.
        let long = "/nix/store/" + String(repeating: "x", count: 5000)
        #expect(
            PathArguments.split([paths[0], long, paths[1]], besides: fixed, limit: 4096) == [
                [paths[0]], [long], [paths[1]],
            ])
        #expect(PathArguments.split([], besides: fixed).isEmpty)
    }

    @Test func onlyPathsThatWereAskedAboutCountAsInvalid() {
        let asked: Set<String> = [Self.path(1), Self.path(2)]
        let output = "\(Self.path(1))\n/nix/store/not-asked\n  \(Self.path(2))  \nwarning: something\n"
        #expect(StoreValidity.invalidPaths(in: output, asked: asked) == asked)
        #expect(StoreValidity.invalidPaths(in: "", asked: asked).isEmpty)
    }

    @Test func parallelSubstitutionIsAskedForAsEachNixVersionUnderstandsIt() {
        #expect(Substitution.version(fromVersionOutput: "nix-store (Nix) 2.8.0\n")! == (2, 8))
        #expect(Substitution.version(fromVersionOutput: "nix-store (Nix) 2.24.10pre")! == (2, 24))
        #expect(Substitution.version(fromVersionOutput: "something else") == nil)
        let old = Substitution.options(forVersion: (2, 8), jobs: 8)
        #expect(old == ["--option", "builders", "", "--option", "max-jobs", "8"])
        let new = Substitution.options(forVersion: (2, 16), jobs: 8)
        #expect(
            new == ["--option", "builders", "", "--option", "max-jobs", "0", "--option", "max-substitution-jobs", "8"])
        #expect(
            Substitution.options(forVersion: nil, jobs: 4) == ["--option", "builders", "", "--option", "max-jobs", "4"])
    }

    @Test func aNarInfoGivesItsStorePathAndFileSize() throws {
        let text =
            "StorePath: \(Self.path(3))\nURL: nar/x.nar.zst\nFileSize: 1234\nReferences: \(Self.path(4).dropFirst(11))\n"
        let info = try NarInfo(parsing: Array(text.utf8), name: "x.narinfo")
        #expect(info.storePath == Self.path(3) && info.fileSize == 1234 && info.referencedPaths == [Self.path(4)])
        #expect(throws: NarInfo.Malformed.self) {
            try NarInfo(parsing: Array("URL: nar/x\nFileSize: -1\n".utf8), name: "x.narinfo")
        }
    }
}

/// The order a host substitutes a closure in while the rest of it still downloads.
@Suite("Dependencies-first order of store paths")
struct DependencyOrderTests {
    @Test func everyPathComesAfterEveryPathItRefersTo() {
        // A closure of real shape: roots every path refers to, libraries on libraries, applications, a top.
        var references: [String: [String]] = [:]
        let roots = (0..<5).map { "/nix/store/root\($0)" }
        for root in roots { references[root] = [root] }  // a self-reference, as many store paths have
        let libraries = (0..<300).map { "/nix/store/lib\($0)" }
        for (index, library) in libraries.enumerated() {
            references[library] = roots + libraries[max(0, index - 4)..<index].reversed()
        }
        let applications = (0..<200).map { "/nix/store/app\($0)" }
        for (index, application) in applications.enumerated() {
            references[application] = [roots[index % 5], libraries[(index * 7) % 300], "/nix/store/already-valid"]
        }
        references["/nix/store/top"] = applications + ["/nix/store/top"]

        let order = DependencyOrder.dependenciesFirst(references)
        #expect(order.count == references.count && Set(order) == Set(references.keys), "each path once")
        let position = Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1, $0) })
        for (path, refs) in references {
            for reference in refs where reference != path && references[reference] != nil {
                #expect(position[reference]! < position[path]!, "\(reference) before \(path)")
            }
        }
        #expect(order.last == "/nix/store/top")
        #expect(DependencyOrder.dependenciesFirst(references) == order, "the same order every time")
    }

    @Test func aDeepChainNeedsNoDeepStackAndAnEmptySetGivesNothing() {
        let chain = (0..<100_000).map { "/nix/store/p\($0)" }
        var references: [String: [String]] = [:]
        for (index, path) in chain.enumerated() { references[path] = index == 0 ? [] : [chain[index - 1]] }
        #expect(DependencyOrder.dependenciesFirst(references) == chain)
        #expect(DependencyOrder.dependenciesFirst([:]).isEmpty)
    }
}
