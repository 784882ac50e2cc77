using System.Globalization;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;
using StackExchange.Redis;

namespace NatKit.Traversal.Redis;

/// <summary>
/// The rendezvous registry several service instances share through Redis: each node's record under
/// <c>{prefix}node:{id}</c> with the registration's lifetime as the key's expiry (Redis drops it when the node stops
/// refreshing), and each instance's mailbox as the pub/sub channel <c>{prefix}instance:{id}</c> that carries a
/// connection's steps between the instance holding the initiator and the one holding the target.
/// </summary>
public sealed class RedisRendezvousRegistry : IRendezvousSharedRegistry
{
    /// <summary>The key and channel prefix unless told otherwise.</summary>
    public const string DefaultPrefix = "natkit:rendezvous:";

    private readonly ConnectionMultiplexer _redis;
    private readonly IDatabase _db;
    private readonly string _prefix;
    private readonly List<RedisChannel> _subscribed = [];

    private RedisRendezvousRegistry(ConnectionMultiplexer redis, int database, string prefix)
    {
        _redis = redis;
        _db = redis.GetDatabase(database);
        _prefix = prefix;
    }

    /// <summary>Connects to the Redis at <paramref name="url"/>: <c>redis://[:PASSWORD@]HOST[:PORT][/DB]</c>
    /// (<c>rediss://</c> for TLS), or plain <c>HOST[:PORT]</c>.</summary>
    /// <exception cref="FormatException">The URL is malformed (the message says how).</exception>
    /// <exception cref="IOException">Redis cannot be reached (the message says why).</exception>
    public static async Task<RedisRendezvousRegistry> ConnectAsync(string url, string prefix = DefaultPrefix,
        TimeSpan? connectTimeout = null)
    {
        ArgumentNullException.ThrowIfNull(url);
        ArgumentException.ThrowIfNullOrEmpty(prefix);
        var (options, database) = ParseUrl(url);
        options.ConnectTimeout = (int)(connectTimeout ?? TimeSpan.FromSeconds(5)).TotalMilliseconds;
        options.AbortOnConnectFail = true;
        options.ClientName = "natkit-rendezvous";
        ConnectionMultiplexer redis;
        try
        {
            redis = await ConnectionMultiplexer.ConnectAsync(options);
        }
        catch (RedisConnectionException e)
        {
            throw new IOException($"{Redact(url)}: cannot reach Redis ({FirstLine(e.InnerException?.Message ?? e.FailureType.ToString())})", e);
        }

        return new RedisRendezvousRegistry(redis, database, prefix);
    }

    /// <summary>Parses a Redis URL into the client's options and the database number.</summary>
    /// <exception cref="FormatException">Not a Redis URL.</exception>
    public static (ConfigurationOptions Options, int Database) ParseUrl(string url)
    {
        ArgumentNullException.ThrowIfNull(url);
        const string Expected = "expected redis://[:PASSWORD@]HOST[:PORT][/DB] or HOST[:PORT]";
        var text = url.Contains("://", StringComparison.Ordinal) ? url : "redis://" + url;
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("redis" or "rediss") ||
            string.IsNullOrEmpty(uri.Host) || uri.Query.Length > 0 || uri.Fragment.Length > 0)
        {
            throw new FormatException($"{Redact(url)}: {Expected}");
        }

        var database = 0;
        var path = uri.AbsolutePath.Trim('/');
        if (path.Length > 0 &&
            (!int.TryParse(path, NumberStyles.None, CultureInfo.InvariantCulture, out database) || database > 15))
        {
            throw new FormatException($"{Redact(url)}: the database must be a number 0-15");
        }

        var options = new ConfigurationOptions { Ssl = uri.Scheme == "rediss" };
        options.EndPoints.Add(uri.IdnHost, uri.IsDefaultPort || uri.Port < 0 ? 6379 : uri.Port);
        if (uri.UserInfo.Length > 0)
        {
            var info = Uri.UnescapeDataString(uri.UserInfo);
            var colon = info.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
            {
                options.Password = info;
            }
            else
            {
                options.User = colon == 0 ? null : info[..colon];
                options.Password = info[(colon + 1)..];
            }
        }

        return (options, database);
    }

    public async Task StoreAsync(NodeId node, ReadOnlyMemory<byte> record, TimeSpan lifetime)
    {
        if (record.IsEmpty || lifetime <= TimeSpan.Zero)
        {
            await _db.KeyDeleteAsync(NodeKey(node));
            return;
        }

        await _db.StringSetAsync(NodeKey(node), record, lifetime);
    }

    public async Task<RendezvousRecord?> LookupAsync(NodeId node, CancellationToken cancellationToken)
    {
        var value = await _db.StringGetAsync(NodeKey(node)).WaitAsync(cancellationToken);
        // What the store holds is checked like anything else from the network: a record that does not parse or
        // whose signature does not verify is no record.
        return value.HasValue && RendezvousRecord.TryDecode((byte[])value!, out var record) && record.Id == node
            ? record
            : null;
    }

    public async Task RelayAsync(string instance, ReadOnlyMemory<byte> message)
    {
        ArgumentNullException.ThrowIfNull(instance);
        await _redis.GetSubscriber().PublishAsync(Channel(instance), message);
    }

    public async Task SubscribeAsync(string instance, Action<ReadOnlyMemory<byte>> receive)
    {
        ArgumentNullException.ThrowIfNull(instance);
        ArgumentNullException.ThrowIfNull(receive);
        var channel = Channel(instance);
        await _redis.GetSubscriber().SubscribeAsync(channel, (_, message) =>
        {
            if (message.HasValue)
            {
                receive((byte[])message!);
            }
        });
        lock (_subscribed)
        {
            _subscribed.Add(channel);
        }
    }

    public async ValueTask DisposeAsync()
    {
        RedisChannel[] channels;
        lock (_subscribed)
        {
            channels = [.. _subscribed];
            _subscribed.Clear();
        }

        foreach (var c in channels)
        {
            try
            {
                await _redis.GetSubscriber().UnsubscribeAsync(c);
            }
            catch (RedisException)
            {
                // Closing anyway: the connection's end drops the subscription.
            }
        }

        await _redis.CloseAsync();
        await _redis.DisposeAsync();
    }

    private RedisKey NodeKey(NodeId node) => _prefix + "node:" + node;

    private RedisChannel Channel(string instance) => RedisChannel.Literal(_prefix + "instance:" + instance);

    /// <summary>The URL without its password, for messages.</summary>
    private static string Redact(string url)
    {
        var at = url.LastIndexOf('@');
        var scheme = url.IndexOf("://", StringComparison.Ordinal);
        return at < 0 ? url : url[..(scheme < 0 ? 0 : scheme + 3)] + "***" + url[at..];
    }

    private static string FirstLine(string text)
    {
        var n = text.IndexOfAny(['\r', '\n']);
        return n < 0 ? text : text[..n];
    }
}
