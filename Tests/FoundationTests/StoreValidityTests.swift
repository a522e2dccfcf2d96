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
