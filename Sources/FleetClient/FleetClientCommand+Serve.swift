import ArgumentParser
import FleetFiles
import FleetProtocol
import Foundation
import UpdatePage

extension FleetClientCommand {
    /// `fleet-client serve`: the page on 127.0.0.1:9999 with the "UPDATE MY MACHINE" button.
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve the page on 127.0.0.1:9999: this host's state and a button that starts a run.",
            discussion: """
                Takes the listening socket from systemd (socket activation: LISTEN_FDS/LISTEN_PID, fd 3) when \
                it passes one, else binds 127.0.0.1:9999 (or --listen). It serves 127.0.0.1 only and answers \
                only requests whose Host is 127.0.0.1:PORT or localhost:PORT and whose Origin (required for a \
                press) is the page's own. A press runs the start command (by default `systemctl start \
                --no-block fleet-client.service`) unless a run is going; runs start at most once per \
                --min-interval. The page shows the latest run from the progress file the run writes into the \
                state directory: it needs no privilege but starting that unit, and never owns a run.
                """)

        @OptionGroup var config: ConfigOption

        @Option(
            help: ArgumentHelp("Bind this loopback address instead of 127.0.0.1:9999.", valueName: "127.0.0.1:port"))
        var listen: String?

        @Option(
            help: ArgumentHelp(
                "Seconds after a run started before the button may start another.", valueName: "seconds"))
        var minInterval = 60

        @Option(
            help: ArgumentHelp(
                "What a press runs, split on spaces (no shell): a command that starts a run and returns.",
                valueName: "command"))
        var startCommand = UpdatePageConfiguration.defaultStartCommand.joined(separator: " ")

        var startCommandWords: [String] { startCommand.split(separator: " ").map(String.init) }

        func validate() throws {
            guard !startCommandWords.isEmpty else {
                throw ValidationError("--start-command: empty; give a command such as the default")
            }
            guard !startCommand.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
                throw ValidationError("--start-command: control characters are not allowed")
            }
            if let listen {
                do {
                    _ = try ListenAddress(parsing: listen)
                } catch {
                    throw ValidationError(error.description)
                }
            }
            guard minInterval >= 0 else { throw ValidationError("--min-interval must be 0 or more seconds") }
        }

        func run() async throws {
            let client = try config.load()
            var settings = UpdatePageConfiguration(host: client.host.value, stateDirectory: client.stateDirectory)
            settings.minimumRunInterval = .seconds(minInterval)
            settings.startCommand = startCommandWords
            // Errors here (a socket from systemd that is not 127.0.0.1, a port in use) are printed as they are.
            let socket = try ListeningSocket.forServe(listen: listen, environment: ProcessInfo.processInfo.environment)
            let server = try await UpdatePageServer.start(settings, socket: socket)
            let address = "http://127.0.0.1:\(server.port)/"
            FileIO.writeToStream(
                2, "fleet-client[\(client.host.value)]: serving \(address) (\(socket.source.rawValue))\n")
            await server.run()
        }
    }
}
