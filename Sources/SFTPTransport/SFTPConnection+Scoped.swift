extension SFTPConnection {
    /// Connects (as ``connect(to:openingSFTP:)``), runs `body` with the connection, and closes it on every path
    /// out: the value, an error `body` throws, or a cancelled task. Like swift-nio's `executeThenClose`, the
    /// connection cannot outlive the scope, and no caller has to remember `close()` after each `catch`.
    ///
    /// - Throws: the ``SSHError`` of connecting, or the one `body` threw (after closing).
    public static func withConnection<Value>(
        to endpoint: SSHEndpoint, openingSFTP: Bool = true,
        _ body: (SFTPConnection) async throws(SSHError) -> Value
    ) async throws(SSHError) -> Value {
        let connection = try await connect(to: endpoint, openingSFTP: openingSFTP)
        let value: Value
        do {
            value = try await body(connection)
        } catch {
            await connection.close()
            throw error
        }
        await connection.close()
        return value
    }
}
