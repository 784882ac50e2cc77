namespace NatKit.Stun.Client;

/// <summary>
/// RFC 8489 section 6.2.1's schedule for a request over UDP: after each send the client waits one RTO, doubling
/// from the initial RTO, and after the last of Rc sends it waits Rm initial RTOs (0, 500, 1500, ... 31500 ms, then
/// 8 s more: 39.5 s with the defaults). Every STUN-based client (Binding, TURN) times its transactions with it.
/// </summary>
public static class StunRetransmission
{
    /// <summary>Rc: how many times a request is sent in all.</summary>
    public const int DefaultRequestCount = 7;

    /// <summary>Rm: how many initial RTOs to wait after the last send.</summary>
    public const int DefaultLastWaitMultiplier = 16;

    /// <summary>How long to wait for a response after send <paramref name="attempt"/> (0-based) of
    /// <paramref name="requestCount"/>.</summary>
    public static TimeSpan WaitAfter(int attempt, int requestCount, TimeSpan initialRto,
        int lastWaitMultiplier = DefaultLastWaitMultiplier) =>
        new Transactions.StunRetransmitPolicy(initialRto, requestCount, initialRto * lastWaitMultiplier).WaitAfter(attempt);

    /// <summary>The whole transaction: the sum of the waits.</summary>
    public static TimeSpan TransactionTimeout(int requestCount, TimeSpan initialRto,
        int lastWaitMultiplier = DefaultLastWaitMultiplier) =>
        new Transactions.StunRetransmitPolicy(initialRto, requestCount, initialRto * lastWaitMultiplier).Total;
}
