// swift-tools-version:6.2
import PackageDescription

/// Settings every fleet target shares: Swift 6 mode and the upcoming features that keep imports honest.
let strictSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "fleet",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "fleet", targets: ["FleetServer"]),
        .executable(name: "fleet-client", targets: ["FleetClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
    ],
    targets: [
        // `--version`'s commit: writes SourceCommit.swift into each executable on every build (see the plugin).
        .plugin(name: "SourceCommitPlugin", capability: .buildTool()),

        // C libraries: each is imported by exactly one wrapper module below.
        .systemLibrary(name: "CLibSSH", pkgConfig: "libssh", providers: [.apt(["libssh-dev"])]),
        .systemLibrary(name: "CLibArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // Linux calls glibc or Swift's Glibc lacks: quotactl_fd(2) for the hosts' disk quotas, syncfs(2) (glibc's and
        // the kernel's headers; wrapped by FleetFiles).
        .systemLibrary(name: "CLinux"),

        // Wrappers: the only modules that see C.
        .target(name: "SFTPTransport", dependencies: ["CLibSSH"], swiftSettings: strictSettings),
        .target(name: "ArchiveKit", dependencies: ["CLibArchive"], swiftSettings: strictSettings),
        .target(name: "SQLiteKit", dependencies: ["CSQLite"], swiftSettings: strictSettings),

        // Pure Swift building blocks.
        .target(name: "SystemdUnitFiles", dependencies: ["FleetFiles"], swiftSettings: strictSettings),
        .target(
            name: "FleetFiles",
            dependencies: [
                "CLinux",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "CommandRunner",
            dependencies: [
                "FleetFiles",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strictSettings
        ),
        // What fleet knows of Nix, for the server and the hosts alike: build invocation, attribute rule, narinfo.
        .target(name: "NixKit", dependencies: ["FleetFiles"], swiftSettings: strictSettings),
        .target(
            name: "FleetProtocol",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"), "TOMLKit", "NixKit", "FleetFiles",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            // WallClock.system honours FLEET_TEST_CLOCK_OFFSET_SECONDS in debug builds only (the tests' builds).
            swiftSettings: strictSettings + [.define("FLEET_TEST_CLOCK", .when(configuration: .debug))]
        ),

        // The server side: its two contracts (fleet.toml; state.db and the chroots), then what uses them.
        .target(
            name: "Inventory",
            dependencies: ["FleetProtocol", "FleetFiles", "NixKit", "TOMLKit"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "ServerStore",
            dependencies: ["FleetProtocol", "SQLiteKit", "FleetFiles"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "Publishing",
            dependencies: [
                "Inventory", "ServerStore", "FleetProtocol", "ArchiveKit", "FleetFiles", "CommandRunner", "BuildGate",
                "FleetHooks", "SQLiteKit", .product(name: "SystemPackage", package: "swift-system"),
            ],
            // Publish fault points (FaultPoint) exist in debug builds only, the ones the tests run.
            swiftSettings: strictSettings + [.define("FLEET_FAULT_INJECTION", .when(configuration: .debug))]
        ),
        .target(
            name: "BuildGate",
            dependencies: ["Inventory", "ServerStore", "FleetProtocol", "FleetFiles", "CommandRunner", "NixKit"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FleetHooks",
            dependencies: ["Inventory", "ServerStore", "FleetProtocol", "CommandRunner"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "FleetReview",
            dependencies: ["Inventory", "ServerStore", "FleetHooks", "FleetProtocol", "FleetFiles", "SQLiteKit"],
            swiftSettings: strictSettings
        ),
        // Replication to [[mirrors]]: rsync over SSH out (chroots), and back (the hosts' logs, for the review).
        .target(
            name: "Mirroring",
            dependencies: ["Inventory", "ServerStore", "FleetReview", "FleetProtocol", "FleetFiles", "CommandRunner"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "ServerSetup",
            dependencies: [
                "Inventory", "ServerStore", "FleetProtocol", "FleetFiles", "CommandRunner", "SystemdUnitFiles",
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "FleetServer",
            dependencies: [
                "Publishing", "ServerSetup", "BuildGate", "Inventory", "ServerStore", "FleetProtocol", "FleetFiles",
                "NixKit",
                "FleetReview", "FleetHooks", "CommandRunner", "SystemdUnitFiles", "Mirroring",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings,
            plugins: ["SourceCommitPlugin"]
        ),

        // The host side.
        // What a host remembers between runs (state.json, last-run.json): read by runs and by the page alike.
        .target(
            name: "ClientStateStore", dependencies: ["FleetProtocol", "FleetFiles"], swiftSettings: strictSettings),
        .target(
            name: "HostAgent",
            dependencies: [
                "ClientStateStore", "SFTPTransport", "FleetProtocol", "ArchiveKit", "FleetFiles", "CommandRunner",
                "NixKit", "SystemdUnitFiles",
            ],
            // CacheFetch honours FLEET_TEST_NARINFO_MEMORY_LIMIT in debug builds only (the tests' builds).
            swiftSettings: strictSettings + [.define("FLEET_TEST_LIMITS", .when(configuration: .debug))]
        ),
        .target(
            name: "UpdatePage",
            dependencies: [
                "ClientStateStore", "FleetProtocol", "CommandRunner",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "FleetClient",
            dependencies: [
                "HostAgent", "ClientStateStore", "UpdatePage", "FleetProtocol", "FleetFiles", "SystemdUnitFiles",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings,
            plugins: ["SourceCommitPlugin"]
        ),

        .target(
            name: "FleetTestSupport",
            dependencies: [
                "FleetFiles", "FleetProtocol", "Inventory", "ServerStore", "Publishing", "CommandRunner", "HostAgent",
                "ClientStateStore", "FleetReview",
            ],
            path: "Tests/FleetTestSupport",
            swiftSettings: strictSettings
        ),
        // Tests by feature area; suites that share the Nix store, sshd or Unix users are serialized within.
        .testTarget(
            name: "FoundationTests",
            dependencies: [
                "FleetTestSupport", "FleetFiles", "CommandRunner", "NixKit", "FleetProtocol",
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "FleetTestSupport", "Inventory", "ServerStore", "Publishing", "ServerSetup", "FleetProtocol",
                "ArchiveKit",
                "SQLiteKit", "FleetFiles", "CommandRunner", "BuildGate", "FleetHooks", "FleetReview",
                "SystemdUnitFiles", "Mirroring",
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "HostTests",
            dependencies: [
                "FleetTestSupport", "Inventory", "ServerStore", "Publishing", "FleetProtocol", "ArchiveKit",
                "SQLiteKit",
                "FleetFiles", "CommandRunner", "NixKit", "HostAgent", "ClientStateStore", "BuildGate", "UpdatePage",
                "FleetHooks", "FleetReview", "SFTPTransport", "SystemdUnitFiles",
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "ArchiveKitTests", dependencies: ["ArchiveKit", "FleetTestSupport"], swiftSettings: strictSettings),
        .testTarget(
            name: "SFTPTransportTests",
            dependencies: ["SFTPTransport", "FleetTestSupport"],
            swiftSettings: strictSettings
        ),
    ]
)
