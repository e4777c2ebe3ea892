//! English and Chinese text: every label, the step narration and the glossary.
//!
//! Each text is a `match` arm holding both languages, so a key cannot exist in one language only
//! (the compiler checks exhaustiveness). Narration is generated from the structured trace step,
//! never from core's English `Note` strings, so it is available in both languages.

use proxyscope_core::trace::{Entry, Hook, Step, Verdict};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Lang {
    #[default]
    En,
    Zh,
}

impl Lang {
    /// Pick the language from `navigator.language` (`zh`, `zh-CN`, `zh-Hant-TW`, ... → Chinese).
    pub fn from_browser(tag: &str) -> Lang {
        if tag.to_ascii_lowercase().starts_with("zh") {
            Lang::Zh
        } else {
            Lang::En
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Zh,
            Lang::Zh => Lang::En,
        }
    }
}

/// A fixed UI string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum K {
    Title,
    Subtitle,
    LangToggle,
    Client,
    Destination,
    Protocol,
    Send,
    SendAgain,
    Play,
    Pause,
    StepBack,
    StepForward,
    Speed,
    Reset,
    JumpToHook,
    PrevHook,
    NextHook,
    Node,
    Routing,
    LocalProcess,
    Pods,
    PacketHeader,
    Source,
    Dest,
    Mark,
    RulePanel,
    NoRuleYet,
    Matched,
    NotMatched,
    FailedMatch,
    Narration,
    Steps,
    NoPacketYet,
    Share,
    CopyLink,
    Embed,
    EmbedSnippet,
    ExportJson,
    Scenario,
    LoadScenario,
    Presets,
    ScenarioErrors,
    Line,
    SendMany,
    Connections,
    Distribution,
    Glossary,
    Shortcuts,
    ShortcutHelp,
    Outcomes,
    Probability,
    ChainStack,
    Verdict,
    Warnings,
    FrameRate,
    OtherNode,
    ThisNode,
    Elsewhere,
    Dropped,
    ShareError,
    Mode,
    SideBySide,
    CompareTitle,
    CompareNone,
    Differences,
    RulesEvaluated,
    NatChains,
    Lookup,
    HowChosen,
    DnatAt,
    Masq,
    WentTo,
    Yes,
    No,
    IpvsTitle,
    Scheduler,
    SchedHint,
    SchedState,
    SchedNoVs,
    Server,
    Weight,
    Active,
    Inactive,
    Buckets,
    Cache,
    IpvsTable,
    AfterMany,
    Keepalive,
    Requests,
    DumpTitle,
    DumpHintIptables,
    DumpHintIpvs,
    LoadDump,
    ClearDump,
    DumpActive,
    DumpProblems,
    CustomDst,
    ExportSvg,
    ExportPng,
    LiveNode,
    DumpNotShared,
    ScaleTab,
    ScaleTitle,
    ScaleHint,
    EndpointsPerService,
    Measuring,
    ScaleDone,
    RulesPerPacket,
    TotalRules,
    SyncWork,
    ServicesAxis,
    ScaleTable,
    IpvsObjects,
    IpsetEntries,
    Precomputed,
    LogScale,
    ChainGraph,
    ChainsTab,
    ChainGraphHelp,
    ChainJumpsTo,
    ChainOnPath,
    ChainPathTo,
    ChainPacketPath,
    ChainSearch,
    ChainSearchHint,
    ChainNoHits,
    LargePreset,
}

pub fn t(lang: Lang, k: K) -> &'static str {
    let (en, zh) = match k {
        K::Title => ("proxyscope", "proxyscope"),
        K::Subtitle => (
            "How kube-proxy sends Service traffic to Pods, packet by packet",
            "逐个数据包查看 kube-proxy 如何把 Service 流量转发到 Pod",
        ),
        K::LangToggle => ("中文", "English"),
        K::Client => ("Client", "客户端"),
        K::Destination => ("Destination", "目的地址"),
        K::Protocol => ("Protocol", "协议"),
        K::Send => ("Send packet", "发送数据包"),
        K::SendAgain => ("Next packet of this connection", "同一连接的下一个包"),
        K::Play => ("Play", "播放"),
        K::Pause => ("Pause", "暂停"),
        K::StepBack => ("Step back", "后退一步"),
        K::StepForward => ("Step forward", "前进一步"),
        K::Speed => ("Speed", "速度"),
        K::Reset => ("Reset", "重置"),
        K::JumpToHook => ("Jump to hook", "跳转到钩子"),
        K::PrevHook => ("Previous hook", "上一个钩子"),
        K::NextHook => ("Next hook", "下一个钩子"),
        K::Node => ("Node (netfilter)", "节点（netfilter）"),
        K::Routing => ("routing", "路由决策"),
        K::LocalProcess => ("local process", "本机进程"),
        K::Pods => ("Pods", "Pod"),
        K::PacketHeader => ("Packet header", "数据包头"),
        K::Source => ("source", "源地址"),
        K::Dest => ("destination", "目的地址"),
        K::Mark => ("mark", "标记"),
        K::RulePanel => ("Rule", "规则"),
        K::NoRuleYet => ("No rule evaluated in this step.", "这一步没有评估规则。"),
        K::Matched => ("matched", "匹配"),
        K::NotMatched => ("did not match", "不匹配"),
        K::FailedMatch => ("failed match", "未通过的匹配条件"),
        K::Narration => ("What happens", "发生了什么"),
        K::Steps => ("All steps", "全部步骤"),
        K::NoPacketYet => (
            "Choose a client and a destination, then send a packet.",
            "选择客户端和目的地址，然后发送数据包。",
        ),
        K::Share => ("Share", "分享"),
        K::CopyLink => ("Link to this view", "当前视图的链接"),
        K::Embed => ("Embed", "嵌入"),
        K::EmbedSnippet => ("iframe snippet", "iframe 代码"),
        K::ExportJson => ("Export trace (JSON)", "导出追踪（JSON）"),
        K::Scenario => ("Scenario", "场景"),
        K::LoadScenario => ("Load scenario", "加载场景"),
        K::Presets => ("Presets", "预设"),
        K::ScenarioErrors => ("Problems in the scenario", "场景中的问题"),
        K::Line => ("line", "第几行"),
        K::SendMany => ("Send many", "批量发送"),
        K::Connections => ("connections", "连接数"),
        K::Distribution => ("Distribution over Pods", "在各 Pod 上的分布"),
        K::Glossary => ("Glossary", "术语表"),
        K::Shortcuts => ("Keyboard", "键盘快捷键"),
        K::ShortcutHelp => (
            "Space play/pause · → / ← step · [ / ] previous/next hook · + / − speed · Home reset · End last step · S send · N next packet of the connection · L language",
            "空格 播放/暂停 · → / ← 单步 · [ / ] 上/下一个钩子 · + / − 速度 · Home 重置 · End 最后一步 · S 发送 · N 同一连接的下一个包 · L 切换语言",
        ),
        K::Outcomes => ("Possible outcomes", "所有可能的结果"),
        K::Probability => ("probability", "概率"),
        K::ChainStack => ("Chain stack", "链调用栈"),
        K::Verdict => ("Verdict", "裁决"),
        K::Warnings => ("Warnings", "警告"),
        K::FrameRate => ("frames per second", "帧每秒"),
        K::OtherNode => ("other node", "其他节点"),
        K::ThisNode => ("this node", "本节点"),
        K::Elsewhere => ("elsewhere", "其他地方"),
        K::Dropped => ("dropped", "已丢弃"),
        K::ShareError => ("The shared link could not be opened", "无法打开分享的链接"),
        K::Mode => ("Mode", "模式"),
        K::SideBySide => ("Side by side", "并排对比"),
        K::CompareTitle => (
            "The same packet: iptables mode | IPVS mode",
            "同一个数据包：iptables 模式 | IPVS 模式",
        ),
        K::CompareNone => (
            "Send a packet to see it in both modes.",
            "发送一个数据包，查看它在两种模式下的处理。",
        ),
        K::Differences => ("Differences", "差异"),
        K::RulesEvaluated => ("iptables rules evaluated", "评估的 iptables 规则数"),
        K::NatChains => ("nat chains walked", "经过的 nat 链"),
        K::Lookup => ("How the Service was found", "如何找到 Service"),
        K::HowChosen => ("How the Pod was chosen", "如何选择 Pod"),
        K::DnatAt => ("Destination rewritten at", "目的地址改写位置"),
        K::Masq => ("Masquerade (SNAT)", "伪装（SNAT）"),
        K::WentTo => ("Went to", "转发到"),
        K::Yes => ("yes", "是"),
        K::No => ("no", "否"),
        K::IpvsTitle => (
            "IPVS: virtual servers and scheduler",
            "IPVS：虚拟服务与调度算法",
        ),
        K::Scheduler => ("Scheduler", "调度算法"),
        K::SchedHint => (
            "kube-proxy applies one scheduler to every virtual server: KubeProxyConfiguration ipvs.scheduler (empty = rr).",
            "kube-proxy 对所有虚拟服务使用同一个调度算法：KubeProxyConfiguration 的 ipvs.scheduler（留空即 rr）。",
        ),
        K::SchedState => ("Scheduler state", "调度器状态"),
        K::SchedNoVs => (
            "The selected destination is not an IPVS virtual server.",
            "所选目的地址不是 IPVS 虚拟服务。",
        ),
        K::Server => ("real server", "真实服务器"),
        K::Weight => ("weight", "权重"),
        K::Active => ("active", "活动连接"),
        K::Inactive => ("inactive", "非活动连接"),
        K::Buckets => ("table buckets", "表中桶数"),
        K::Cache => ("Cache: destination → server", "缓存：目的地址 → 服务器"),
        K::IpvsTable => ("ipvsadm -Ln", "ipvsadm -Ln"),
        K::AfterMany => ("After these connections", "这些连接之后"),
        K::Keepalive => (
            "Keepalive: requests reuse 4 connections",
            "长连接（keepalive）：请求复用 4 个连接",
        ),
        K::Requests => ("requests", "请求数"),
        K::DumpTitle => ("Trace through a real node's rules", "用真实节点的规则追踪"),
        K::DumpHintIptables => (
            "Paste `iptables-save` (or `ip6tables-save`) from a node. The scenario above still describes the node (its addresses, Pod CIDR).",
            "粘贴节点上 `iptables-save`（或 `ip6tables-save`）的输出。上面的场景仍用于描述节点（地址、Pod CIDR）。",
        ),
        K::DumpHintIpvs => (
            "Paste `ipvsadm -Sn`, `ipset save` and `iptables-save` from a node, each under its header line (# ipvsadm -Sn, # ipset save, # iptables-save).",
            "粘贴节点上的 `ipvsadm -Sn`、`ipset save` 和 `iptables-save`，每段前加标题行（# ipvsadm -Sn、# ipset save、# iptables-save）。",
        ),
        K::LoadDump => ("Trace through this dump", "使用此导出追踪"),
        K::ClearDump => ("Back to the scenario's rules", "恢复为场景生成的规则"),
        K::DumpActive => (
            "Packets are traced through the pasted dump.",
            "数据包正在通过粘贴的导出规则追踪。",
        ),
        K::DumpProblems => ("Problems in the dump", "导出中的问题"),
        K::CustomDst => (
            "Or any destination (address:port)",
            "或任意目的地址（地址:端口）",
        ),
        K::ExportSvg => ("Export diagram (SVG)", "导出示意图（SVG）"),
        K::LiveNode => ("Live node", "实时节点"),
        K::DumpNotShared => (
            "This dump is too large for a share link; the link carries the rest of the view.",
            "此导出太大，无法放入分享链接；链接只保存其余的视图状态。",
        ),
        K::ScaleTab => ("Scale", "规模"),
        K::ChainGraph => ("Chain graph", "链图"),
        K::ChainsTab => ("Chains", "链"),
        K::ChainGraphHelp => (
            "Built-in chains in the order a packet meets them; the packet's chains and the chain you find are unfolded, the rest folded into counts. Arrow keys move, Enter selects or unfolds.",
            "内置链按数据包经过的顺序排列；数据包经过的链和查找到的链会展开，其余折叠为计数。方向键移动，Enter 选中或展开。",
        ),
        K::ChainJumpsTo => ("chains jumped to", "个跳转目标链"),
        K::ChainOnPath => ("on the packet's path", "在数据包经过的路径上"),
        K::ChainPathTo => ("Reached by", "到达路径"),
        K::ChainPacketPath => ("The packet walked", "数据包经过"),
        K::ChainSearch => ("Find a chain", "查找链"),
        K::ChainSearchHint => (
            "Service name, chain, comment or address",
            "Service 名称、链名、注释或地址",
        ),
        K::ChainNoHits => ("No chain or rule matches.", "没有匹配的链或规则。"),
        K::LargePreset => (
            "large cluster (10,000 Services, generated)",
            "大规模集群（10,000 个 Service，自动生成）",
        ),
        K::ScaleTitle => (
            "Scale: how the work grows with the number of Services",
            "规模：工作量如何随 Service 数量增长",
        ),
        K::ScaleHint => (
            "Measured by core on generated clusters (every 10th Service a NodePort, every 20th a LoadBalancer): the per-packet walk is the first packet of a new connection from a Pod on another node to the ClusterIP of the Service in the middle of the list. Sync work counts the lines of a full sync: the iptables-restore payload, plus in IPVS mode ipset entries and IPVS virtual/real servers. Both axes are logarithmic.",
            "由 core 在生成的集群上实测（每 10 个 Service 有一个 NodePort，每 20 个有一个 LoadBalancer）：每包规则数是从其他节点上的 Pod 发往列表中间那个 Service 的 ClusterIP 的新连接第一个包所评估的规则数。同步工作量统计一次完整同步写入的行数：iptables-restore 的输入，IPVS 模式再加上 ipset 条目和 IPVS 虚拟/真实服务器。两个坐标轴都是对数刻度。",
        ),
        K::EndpointsPerService => ("Endpoints per Service", "每个 Service 的端点数"),
        K::Measuring => ("Measuring", "正在测量"),
        K::ScaleDone => (
            "Done. 10,000 Services: precomputed natively by the same code (measuring it in the page would freeze it for seconds); drawn hollow with a dashed line.",
            "完成。10,000 个 Service 的数据由同一份代码在本机预先算出（在页面里测量会卡住数秒）；图中以空心点和虚线表示。",
        ),
        K::RulesPerPacket => ("iptables rules per packet", "每个包评估的 iptables 规则数"),
        K::TotalRules => ("iptables rules on the node", "节点上的 iptables 规则数"),
        K::SyncWork => ("lines written by a full sync", "一次完整同步写入的行数"),
        K::ServicesAxis => ("Services", "Service 数"),
        K::ScaleTable => ("The numbers behind the charts", "图表对应的数据"),
        K::IpvsObjects => ("IPVS virtual + real servers", "IPVS 虚拟 + 真实服务器数"),
        K::IpsetEntries => ("ipset entries", "ipset 条目数"),
        K::Precomputed => ("precomputed", "预先计算"),
        K::LogScale => ("logarithmic axes", "对数坐标"),

        K::ExportPng => ("Export diagram (PNG)", "导出示意图（PNG）"),
    };
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

/// Glossary: (English term, Chinese term, English explanation, Chinese explanation).
pub const GLOSSARY: &[(&str, &str, &str, &str)] = &[
    (
        "session affinity",
        "会话保持",
        "Packets from the same client IP keep going to the same Pod for a while (iptables: -m recent lists).",
        "同一客户端 IP 的数据包在一段时间内总是发往同一个 Pod（iptables 模式用 -m recent 列表实现）。",
    ),
    (
        "masquerade",
        "伪装",
        "Source NAT to the outgoing interface's address, so replies come back through this node.",
        "把源地址改成出口网卡的地址（源 NAT），使回包经过本节点返回。",
    ),
    (
        "scheduling algorithm",
        "调度算法",
        "How IPVS picks a real server for a new connection (rr, wrr, lc, sh, ...).",
        "IPVS 为新连接挑选真实服务器的方法（rr、wrr、lc、sh 等）。",
    ),
    (
        "conntrack",
        "连接跟踪",
        "The kernel's table of connections; NAT is decided on a connection's first packet and replayed for the rest.",
        "内核的连接表；NAT 只在连接的第一个包上决定，之后的包沿用同样的转换。",
    ),
    (
        "DNAT",
        "目的地址转换",
        "Rewriting the destination address: the Service IP becomes a Pod IP.",
        "改写目的地址：把 Service IP 换成 Pod IP。",
    ),
    (
        "SNAT",
        "源地址转换",
        "Rewriting the source address.",
        "改写源地址。",
    ),
    (
        "netfilter hook",
        "netfilter 钩子",
        "A fixed point in the kernel's packet path where iptables chains run.",
        "内核数据包路径上固定的位置，iptables 的链在这里执行。",
    ),
    (
        "chain",
        "链",
        "An ordered list of rules; -j jumps into another chain and returns, -g goes to it without returning.",
        "按顺序排列的规则列表；-j 跳入另一条链并返回，-g 转入另一条链不返回。",
    ),
    (
        "endpoint",
        "端点",
        "A Pod IP and port that backs a Service.",
        "Service 后端 Pod 的 IP 和端口。",
    ),
    (
        "ClusterIP",
        "集群 IP",
        "The virtual IP of a Service inside the cluster.",
        "Service 在集群内部的虚拟 IP。",
    ),
    (
        "NodePort",
        "节点端口",
        "A port opened on every node that leads to the Service.",
        "在每个节点上开放、通往该 Service 的端口。",
    ),
    (
        "LoadBalancer IP",
        "负载均衡器 IP",
        "The address a cloud load balancer gives the Service.",
        "云负载均衡器分配给 Service 的地址。",
    ),
    (
        "externalIP",
        "外部 IP",
        "An address listed in spec.externalIPs that nodes accept for the Service.",
        "在 spec.externalIPs 中列出、节点会为该 Service 接收的地址。",
    ),
    (
        "externalTrafficPolicy",
        "外部流量策略",
        "Local keeps the client source IP but only uses Pods on the receiving node.",
        "Local 保留客户端源 IP，但只使用接收节点上的 Pod。",
    ),
];

/// A client preset's label. Core's labels are English; the known ones are translated, anything
/// else is shown as core wrote it.
pub fn client_label(lang: Lang, core_label: &str) -> String {
    let zh = match core_label {
        "Pod on this node" => "本节点上的 Pod",
        "Pod on another node" => "其他节点上的 Pod",
        "This node" => "本节点",
        "External client" => "外部客户端",
        _ => return core_label.to_string(),
    };
    match lang {
        Lang::En => core_label.to_string(),
        Lang::Zh => zh.to_string(),
    }
}

/// A Service address as a picker entry: `my-service ClusterIP 10.104.14.67:80`.
pub fn target_label(lang: Lang, kind: &str, service: &str, addr: &str, fallback: &str) -> String {
    let k = match (lang, kind) {
        (Lang::En, "cluster_ip") => "ClusterIP",
        (Lang::En, "node_port") => "NodePort",
        (Lang::En, "external_ip") => "externalIP",
        (Lang::En, "load_balancer") => "LoadBalancer IP",
        (Lang::Zh, "cluster_ip") => "集群 IP",
        (Lang::Zh, "node_port") => "节点端口",
        (Lang::Zh, "external_ip") => "外部 IP",
        (Lang::Zh, "load_balancer") => "负载均衡器 IP",
        _ => return fallback.to_string(),
    };
    format!("{service} {k} {addr}")
}

pub fn hook_name(h: Hook) -> &'static str {
    h.as_str()
}

fn verdict_words(lang: Lang, v: Verdict) -> &'static str {
    match (lang, v) {
        (Lang::En, Verdict::Accept) => "accepted and delivered to a local socket",
        (Lang::En, Verdict::Forwarded) => "sent out of the node",
        (Lang::En, Verdict::Drop) => "dropped silently",
        (Lang::En, Verdict::Reject) => "rejected (the client gets an error back)",
        (Lang::Zh, Verdict::Accept) => "被接受并交给本机的套接字",
        (Lang::Zh, Verdict::Forwarded) => "被发送出节点",
        (Lang::Zh, Verdict::Drop) => "被静默丢弃",
        (Lang::Zh, Verdict::Reject) => "被拒绝（客户端会收到错误）",
    }
}

/// Why a hook matters for kube-proxy, in one sentence (kube-proxy installs its jumps in nat
/// PREROUTING/OUTPUT for DNAT and nat POSTROUTING for masquerade; filter chains see the
/// post-DNAT destination).
fn hook_why(lang: Lang, h: Hook, table: &str) -> &'static str {
    match (lang, h, table) {
        (Lang::En, Hook::Prerouting, "nat") => {
            "kube-proxy's KUBE-SERVICES chain runs here, so Service addresses are rewritten before routing."
        }
        (Lang::Zh, Hook::Prerouting, "nat") => {
            "kube-proxy 的 KUBE-SERVICES 链在这里执行，所以 Service 地址在路由之前就被改写。"
        }
        (Lang::En, Hook::Output, "nat") => {
            "Packets made on the node itself skip PREROUTING; kube-proxy hooks KUBE-SERVICES here too."
        }
        (Lang::Zh, Hook::Output, "nat") => {
            "节点自身发出的包不经过 PREROUTING；kube-proxy 也在这里挂上 KUBE-SERVICES。"
        }
        (Lang::En, Hook::Postrouting, "nat") => {
            "Last stop before leaving: KUBE-POSTROUTING masquerades packets that carry the 0x4000 mark."
        }
        (Lang::Zh, Hook::Postrouting, "nat") => {
            "离开前的最后一站：KUBE-POSTROUTING 对带有 0x4000 标记的包做伪装。"
        }
        (Lang::En, _, "filter") => {
            "The filter table sees the destination after DNAT, so it only catches unrewritten Service traffic."
        }
        (Lang::Zh, _, "filter") => {
            "filter 表看到的是 DNAT 之后的目的地址，所以只会拦截没有被改写的 Service 流量。"
        }
        (Lang::En, _, _) => "The packet reaches this hook.",
        (Lang::Zh, _, _) => "数据包到达这个钩子。",
    }
}

/// What a sentence may need beyond the step itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NarrCtx {
    /// Destination `ip` of the packet as it is at this step.
    pub dst: String,
    /// The packet was made on the node itself (OUTPUT path).
    pub local_origin: bool,
    /// This route lookup is on the output path (after nat OUTPUT, or IPVS after LOCAL_IN).
    pub output_path: bool,
}

/// One plain-words sentence for a step.
pub fn narrate(lang: Lang, step: &Step, cx: &NarrCtx) -> String {
    let zh = lang == Lang::Zh;
    match step {
        Step::Hook { hook, table } => {
            let why = hook_why(lang, *hook, table);
            if zh {
                format!("数据包进入 {table} 表的 {} 钩子。{why}", hook_name(*hook))
            } else {
                format!(
                    "The packet enters the {} hook, {table} table. {why}",
                    hook_name(*hook)
                )
            }
        }
        Step::Conntrack {
            established: true, ..
        } => {
            if zh {
                "连接跟踪找到已有连接：沿用第一个包的 NAT，nat 表的链不再执行。".into()
            } else {
                "Conntrack finds an existing connection: the first packet's NAT is reused and nat chains are skipped.".into()
            }
        }
        Step::Conntrack {
            established: false, ..
        } => {
            if zh {
                "连接跟踪没有找到这个连接：这是新连接，nat 表的规则将决定它的去向。".into()
            } else {
                "Conntrack has no entry for this flow: it is a new connection, so the nat rules decide where it goes.".into()
            }
        }
        // The packet the routing decision sees may or may not have been DNATed (no endpoints:
        // the ClusterIP itself is routed), so the sentence names the address instead of
        // assuming a Pod IP. A packet made on the node leaves through POSTROUTING, not FORWARD.
        Step::Route { local: true, .. } => {
            if zh {
                format!("路由决策：{} 是本机地址，数据包交给本机（INPUT）。", cx.dst)
            } else {
                format!(
                    "Routing decision: {} is an address of this node, so the packet is delivered locally (INPUT).",
                    cx.dst
                )
            }
        }
        Step::Route { local: false, .. } => match (cx.output_path, cx.local_origin, zh) {
            (false, _, false) => format!(
                "Routing decision: {} is not an address of this node, so the packet is forwarded (FORWARD).",
                cx.dst
            ),
            (false, _, true) => format!(
                "路由决策：{} 不是本机地址，数据包被转发（FORWARD）。",
                cx.dst
            ),
            (true, true, false) => format!(
                "Routing decision (re-done after nat OUTPUT): {} is not an address of this node, so the packet leaves through POSTROUTING.",
                cx.dst
            ),
            (true, true, true) => format!(
                "路由决策（nat OUTPUT 之后重新进行）：{} 不是本机地址，数据包经 POSTROUTING 离开。",
                cx.dst
            ),
            // IPVS: the packet was delivered locally (the Service IP is on kube-ipvs0), rewritten
            // at LOCAL_IN, and is now sent out like a locally generated one, not forwarded.
            (true, false, false) => format!(
                "Output route for the rewritten packet: {} is not an address of this node, so it leaves through OUTPUT and POSTROUTING (not FORWARD).",
                cx.dst
            ),
            (true, false, true) => format!(
                "为改写后的数据包查找输出路由：{} 不是本机地址，数据包经 OUTPUT 和 POSTROUTING 离开（不经过 FORWARD）。",
                cx.dst
            ),
        },
        Step::Chain {
            table,
            chain,
            entry,
        } => match (entry, zh) {
            (Entry::Hook, false) => format!("Start of the built-in chain {table}/{chain}."),
            (Entry::Hook, true) => format!("开始执行内置链 {table}/{chain}。"),
            (Entry::Jump, false) => format!("Jump (-j) into {chain}; it returns here when done."),
            (Entry::Jump, true) => format!("跳转（-j）到 {chain}；执行完后返回。"),
            (Entry::Goto, false) => {
                format!("Go to (-g) {chain}; it will not return to the caller.")
            }
            (Entry::Goto, true) => format!("转到（-g）{chain}；不会返回调用者。"),
        },
        Step::Rule {
            chain,
            index,
            matched,
            failed,
            ..
        } => match (matched, failed, zh) {
            (true, _, false) => format!("Rule {index} of {chain} matches, so its target runs."),
            (true, _, true) => format!("{chain} 的第 {index} 条规则匹配，执行它的目标。"),
            (false, Some(f), false) => {
                format!("Rule {index} of {chain} does not match: {f} fails. Next rule.")
            }
            (false, Some(f), true) => {
                format!("{chain} 的第 {index} 条规则不匹配：条件 {f} 不成立。继续下一条。")
            }
            (false, None, false) => format!("Rule {index} of {chain} does not match. Next rule."),
            (false, None, true) => format!("{chain} 的第 {index} 条规则不匹配。继续下一条。"),
        },
        Step::Skipped {
            chain,
            first,
            last,
            reason,
            ..
        } => {
            let n = last + 1 - first;
            if zh {
                format!(
                    "{chain} 的第 {first}–{last} 条规则（{n} 条）不可能匹配（{reason}）。内核仍会逐条检查，这里一并略过。"
                )
            } else {
                format!(
                    "Rules {first}–{last} of {chain} ({n} rules) cannot match ({reason}). The kernel still checks each one; they are passed over here as a group."
                )
            }
        }
        Step::ChainEnd {
            chain,
            policy: Some(p),
            ..
        } => {
            if zh {
                format!("{chain} 链结束，应用默认策略 {p:?}。")
            } else {
                format!("End of {chain}: its default policy {p:?} applies.")
            }
        }
        Step::ChainEnd {
            chain,
            policy: None,
            ..
        } => {
            if zh {
                format!("{chain} 链结束，没有裁决，返回调用者。")
            } else {
                format!("End of {chain} without a verdict: back to the caller.")
            }
        }
        Step::Return { chain, .. } => {
            if zh {
                format!("从 {chain} 返回（RETURN）到调用它的链。")
            } else {
                format!("RETURN from {chain} to the chain that called it.")
            }
        }
        Step::Mark { from, to } => {
            // 0x4000 is kube-proxy's default masquerade bit (--iptables-masquerade-bit=14).
            let masq = (to & !from) & 0x4000 != 0;
            match (masq, zh) {
                (true, false) => format!(
                    "The packet mark changes from {from:#x} to {to:#x}: KUBE-MARK-MASQ sets bit 0x4000, which means \"masquerade on the way out\"."
                ),
                (true, true) => format!(
                    "数据包标记从 {from:#x} 变为 {to:#x}：KUBE-MARK-MASQ 设置 0x4000 位，表示“离开节点时需要伪装”。"
                ),
                (false, false) => format!("The packet mark changes from {from:#x} to {to:#x}."),
                (false, true) => format!("数据包标记从 {from:#x} 变为 {to:#x}。"),
            }
        }
        Step::Dnat { from, to } => {
            if zh {
                format!("DNAT：目的地址 {from} 被改写为 Pod 端点 {to}。连接跟踪会记住这个选择。")
            } else {
                format!(
                    "DNAT: the destination {from} is rewritten to the Pod endpoint {to}. Conntrack remembers this choice."
                )
            }
        }
        Step::Snat {
            from,
            to,
            masquerade: true,
        } => {
            if zh {
                format!("伪装（MASQUERADE）：源地址 {from} 被改写为 {to}，回包因此会经过本节点。")
            } else {
                format!(
                    "MASQUERADE: the source {from} becomes {to}, so the reply comes back through this node."
                )
            }
        }
        Step::Snat {
            from,
            to,
            masquerade: false,
        } => {
            if zh {
                format!("SNAT：源地址 {from} 被改写为 {to}。")
            } else {
                format!("SNAT: the source {from} becomes {to}.")
            }
        }
        Step::Recent {
            name,
            action,
            addr,
            hit,
        } => {
            if zh {
                format!(
                    "会话保持：在 -m recent 列表 {name} 中 {action} {addr}（{}）。",
                    if *hit { "命中" } else { "未命中" }
                )
            } else {
                format!(
                    "Session affinity: -m recent list {name}, {action} {addr} ({}).",
                    if *hit { "hit" } else { "miss" }
                )
            }
        }
        Step::IpvsLookup {
            service: Some(s), ..
        } => {
            if zh {
                format!("IPVS 在 LOCAL_IN 找到虚拟服务 {s}。")
            } else {
                format!("IPVS finds the virtual service {s} at LOCAL_IN.")
            }
        }
        Step::IpvsLookup { service: None, .. } => {
            if zh {
                "IPVS 没有匹配的虚拟服务。".into()
            } else {
                "IPVS has no virtual service for this packet.".into()
            }
        }
        Step::IpvsSchedule {
            scheduler,
            server,
            reason,
        } => match (server, zh) {
            (Some(s), false) => format!("Scheduling algorithm {scheduler} picks {s}: {reason}"),
            (Some(s), true) => format!("调度算法 {scheduler} 选择了 {s}：{reason}"),
            (None, false) => format!("Scheduling algorithm {scheduler} finds no server: {reason}"),
            (None, true) => format!("调度算法 {scheduler} 没有可用的服务器：{reason}"),
        },
        Step::IpvsConnection { server, .. } => {
            if zh {
                format!("复用已有的 IPVS 连接或持久化模板，发往 {server}。")
            } else {
                format!("An existing IPVS connection or persistence template is reused: {server}.")
            }
        }
        Step::Note { text } => core_note(lang, text).0,
        Step::Verdict { verdict } => {
            if zh {
                format!("结果：数据包{}。", verdict_words(lang, *verdict))
            } else {
                format!("Result: the packet is {}.", verdict_words(lang, *verdict))
            }
        }
    }
}

/// A plain-words note from core (`Step::Note`, English only) in the learner's language, and the
/// language the returned text is in. The note kinds core emits are matched on their stable
/// English openings (their variable parts — a server, a LOG prefix — are carried over); a note
/// this table does not know stays English, marked so, rather than guessed.
pub fn core_note(lang: Lang, text: &str) -> (String, Lang) {
    if lang == Lang::En {
        return (text.to_string(), Lang::En);
    }
    let zh = |s: String| (s, Lang::Zh);
    if text.starts_with("ACCEPT: this table lets the packet go on") {
        return zh("ACCEPT：本表放行数据包，交给下一个表或钩子继续处理。".into());
    }
    if let Some(rest) = text.strip_prefix("--random-fully:") {
        // core appends "(OLD became NEW, drawn from LO-HI)" when the walk drew the port.
        let drawn = rest
            .split_once('(')
            .and_then(|(_, d)| d.strip_suffix(')'))
            .and_then(|d| d.split_once(" became "))
            .and_then(|(old, d)| d.split_once(", drawn from ").map(|(new, r)| (old, new, r)));
        return zh(match drawn {
            Some((old, new, range)) => format!(
                "--random-fully：源端口随机选取，而不是保留原来的端口（{old} 变为 {new}，取自 {range}）。"
            ),
            None => "--random-fully：源端口随机选取，而不是保留原来的端口。".into(),
        });
    }
    if let Some(rest) = text.strip_prefix("LOG: the kernel logs the packet") {
        return zh(match rest.strip_prefix(" with prefix ") {
            Some(prefix) => format!("LOG：内核记录这个数据包（日志前缀 {prefix}）。"),
            None => "LOG：内核记录这个数据包。".into(),
        });
    }
    if text.starts_with("IPVS hooks LOCAL_OUT") {
        return zh("IPVS 挂在 LOCAL_OUT 上，紧跟 nat OUTPUT 之后（ip_vs_local_request，优先级 -98）：它在 filter OUTPUT 之前看到数据包。".into());
    }
    if text.starts_with("IPVS hooks LOCAL_IN") {
        return zh("IPVS 挂在 LOCAL_IN 上，位于 filter INPUT 之后、nat INPUT 之前（ip_vs_remote_request，优先级 99）：目的地址在本机且有对应的虚拟服务，所以 IPVS 在这里接管数据包。".into());
    }
    if text.starts_with("IPVS (masq forwarding) rewrote the destination") {
        return zh("IPVS（masq 转发）改写了目的地址，记入 conntrack 条目（net.ipv4.vs.conntrack=1），再把数据包送回 LOCAL_OUT：filter OUTPUT 和 POSTROUTING 处理改写后的数据包；nat OUTPUT 不再运行（这个连接的 DNAT 已经确定）。".into());
    }
    if let Some(rest) = text.strip_prefix("the persistence template points at ")
        && let Some((server, _)) = rest.split_once(", which is gone or has weight 0")
    {
        return zh(format!(
            "持久化模板指向 {server}，但它已不存在或权重为 0：模板过期（expire_quiescent_template=1），调度算法重新选择。"
        ));
    }
    if text.starts_with("no real server: IPVS (ip_vs_leave)") {
        return zh("没有可用的真实服务器：IPVS（ip_vs_leave）回复 ICMP 端口不可达并丢弃数据包；TCP 客户端看到 \"connection refused\"（连接被拒绝）。".into());
    }
    (text.to_string(), Lang::En)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn core_notes_are_translated_by_their_stable_part_and_unknown_ones_stay_english() {
        // The English texts below are core's (core/src/netfilter/walk.rs, core/src/ipvs/).
        let zh = |t: &str| core_note(Lang::Zh, t);
        let (s, l) = zh("ACCEPT: this table lets the packet go on");
        assert_eq!(l, Lang::Zh);
        assert!(s.starts_with("ACCEPT：本表放行"), "{s}");
        let (s, _) = zh("LOG: the kernel logs the packet with prefix \"kube: \"");
        assert_eq!(s, "LOG：内核记录这个数据包（日志前缀 \"kube: \"）。");
        let (s, _) = zh(
            "the persistence template points at 10.0.0.3:8080, which is gone or has weight 0: it expires (expire_quiescent_template=1) and the scheduler picks again",
        );
        assert!(s.starts_with("持久化模板指向 10.0.0.3:8080，"), "{s}");
        let (s, _) = zh(
            "--random-fully: the source port is picked at random, not kept (40000 became 51234, drawn from 1024-65535)",
        );
        assert!(s.contains("40000 变为 51234，取自 1024-65535"), "{s}");
        for t in [
            "--random-fully: the source port is picked at random, not kept",
            "IPVS hooks LOCAL_OUT right after nat OUTPUT (ip_vs_local_request, priority -98): it sees the packet before filter OUTPUT",
            "IPVS hooks LOCAL_IN after filter INPUT (ip_vs_remote_request, priority 99, before nat INPUT): the destination is local and has a virtual service, so IPVS takes the packet here",
            "IPVS (masq forwarding) rewrote the destination, recorded it in the conntrack entry (net.ipv4.vs.conntrack=1) and re-sends the packet",
            "no real server: IPVS (ip_vs_leave) answers ICMP port unreachable and drops the packet; a TCP client sees \"connection refused\"",
        ] {
            let (s, l) = zh(t);
            assert_eq!(l, Lang::Zh, "{t}");
            assert!(!s.is_ascii(), "{t} → {s}");
        }
        // A note kind this table does not know: English, marked as English.
        let (s, l) = zh("a brand-new note");
        assert_eq!((s.as_str(), l), ("a brand-new note", Lang::En));
        assert_eq!(core_note(Lang::En, "LOG: x").0, "LOG: x");
    }

    #[test]
    fn routing_sentence_names_the_address_it_routed() {
        // No endpoints: nat never rewrote the ClusterIP, and the sentence must not claim a Pod IP.
        let cx = NarrCtx {
            dst: "10.96.44.4".into(),
            local_origin: false,
            output_path: false,
        };
        let s = narrate(
            Lang::En,
            &Step::Route {
                local: false,
                note: String::new(),
            },
            &cx,
        );
        assert!(
            s.contains("10.96.44.4") && s.contains("FORWARD") && !s.contains("Pod"),
            "{s}"
        );
        let cx = NarrCtx {
            local_origin: true,
            output_path: true,
            ..cx
        };
        let s = narrate(
            Lang::Zh,
            &Step::Route {
                local: false,
                note: String::new(),
            },
            &cx,
        );
        assert!(s.contains("POSTROUTING") && !s.contains("FORWARD"), "{s}");
        // IPVS: rewritten at LOCAL_IN, then sent out through LOCAL_OUT — never FORWARD.
        let cx = NarrCtx {
            local_origin: false,
            ..cx
        };
        let route = Step::Route {
            local: false,
            note: String::new(),
        };
        let s = narrate(Lang::En, &route, &cx);
        assert!(s.contains("OUTPUT and POSTROUTING (not FORWARD)"), "{s}");
    }

    #[test]
    fn browser_language() {
        assert_eq!(Lang::from_browser("zh-CN"), Lang::Zh);
        assert_eq!(Lang::from_browser("zh-Hant-TW"), Lang::Zh);
        assert_eq!(Lang::from_browser("ZH"), Lang::Zh);
        assert_eq!(Lang::from_browser("en-GB"), Lang::En);
        assert_eq!(Lang::from_browser(""), Lang::En);
    }

    #[test]
    fn glossary_has_the_required_terms() {
        for (en, zh) in [
            ("session affinity", "会话保持"),
            ("masquerade", "伪装"),
            ("scheduling algorithm", "调度算法"),
        ] {
            assert!(GLOSSARY.iter().any(|g| g.0 == en && g.1 == zh), "{en}");
        }
    }

    #[test]
    fn narration_differs_by_language_and_names_the_chain() {
        let s = Step::Rule {
            table: "nat".into(),
            chain: "KUBE-SVC-X".into(),
            index: 1,
            text: "".into(),
            line: None,
            matched: false,
            failed: Some("! -s 10.0.0.0/16".into()),
            note: None,
        };
        let en = narrate(Lang::En, &s, &NarrCtx::default());
        let zh = narrate(Lang::Zh, &s, &NarrCtx::default());
        assert!(en.contains("KUBE-SVC-X") && en.contains("! -s 10.0.0.0/16"));
        assert!(zh.contains("KUBE-SVC-X") && zh.contains("不匹配"));
    }
}

/// One line on what each IPVS scheduler does (`net/netfilter/ipvs/ip_vs_<name>.c`).
pub fn sched_desc(lang: Lang, k: crate::model::SchedulerKind) -> &'static str {
    use crate::model::SchedulerKind as S;
    let (en, zh) = match k {
        S::Rr => (
            "round robin: the next server after the one picked last",
            "轮询：上次选中的服务器之后的下一个",
        ),
        S::Wrr => (
            "weighted round robin: passes over the list with a falling weight threshold cw; a server gets a connection while its weight ≥ cw",
            "加权轮询：按逐步降低的权重门限 cw 轮流扫描，权重 ≥ cw 的服务器获得连接",
        ),
        S::Lc => (
            "least connection: fewest active×256 + inactive connections",
            "最少连接：活动连接×256 + 非活动连接 最少者",
        ),
        S::Wlc => (
            "weighted least connection: lowest (active×256 + inactive) / weight",
            "加权最少连接：(活动×256 + 非活动) / 权重 最小者",
        ),
        S::Lblc => (
            "locality-based least connection: one server per destination address (a cache), wlc when it is new or overloaded",
            "基于局部性的最少连接：每个目的地址对应一台服务器（缓存），新地址或过载时按 wlc 选择",
        ),
        S::Lblcr => (
            "lblc with replication: a set of servers per destination address",
            "带复制的 lblc：每个目的地址对应一组服务器",
        ),
        S::Dh => (
            "destination hashing: a 256-bucket table indexed by the destination address — a Service VIP is one address, so one server gets everything",
            "目的地址哈希：按目的地址索引 256 个桶——Service VIP 只有一个地址，所以全部流量落到同一台服务器",
        ),
        S::Sh => (
            "source hashing: a 256-bucket table indexed by the client address, filled by weight",
            "源地址哈希：按客户端地址索引 256 个桶，按权重填充",
        ),
        S::Sed => (
            "shortest expected delay: lowest (active + 1) / weight",
            "最短预期延迟：(活动连接 + 1) / 权重 最小者",
        ),
        S::Nq => (
            "never queue: an idle server if there is one, otherwise sed",
            "永不排队：有空闲服务器就选它，否则按 sed",
        ),
        S::Fo => (
            "weighted failover: the highest-weight server not overloaded",
            "加权故障转移：未过载的权重最高者",
        ),
        S::Ovf => (
            "overflow: the highest-weight server while its active connections are below its weight",
            "溢出连接：活动连接数低于其权重的服务器中权重最高者",
        ),
        S::Mh => (
            "maglev hashing: a consistent-hash lookup table indexed by the client address",
            "Maglev 哈希：按客户端地址索引的一致性哈希表",
        ),
        S::Twos => (
            "weighted random twos choice: two servers drawn by weight, the less loaded wins",
            "加权随机二选一：按权重随机抽两台，负载较低者胜出",
        ),
    };
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

/// The label of a piece of scheduler state (the kernel's field name stays in the text).
pub fn fact_label(lang: Lang, f: crate::model::Fact) -> &'static str {
    use crate::model::Fact as F;
    let (en, zh) = match f {
        F::Position => (
            "last server picked (sched_data)",
            "上次选中的服务器（sched_data）",
        ),
        F::Cw => ("current weight cw", "当前权重 cw"),
        F::Mw => ("max weight mw", "最大权重 mw"),
        F::Di => ("weight gcd di", "权重最大公约数 di"),
        F::TableSize => ("lookup table size", "查找表大小"),
        F::Gcd => ("weight gcd", "权重最大公约数"),
        F::Rshift => ("weight shift rshift", "权重右移 rshift"),
        F::CacheEntries => ("cache entries (kernel count)", "缓存条目数（内核计数）"),
        F::NextGc => ("next garbage-collection tick", "下一次垃圾回收时间"),
    };
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

/// The callouts of the side-by-side view: what differs between the two modes for this packet.
pub fn compare_notes(
    lang: Lang,
    a: &crate::model::ModeSummary,
    b: &crate::model::ModeSummary,
) -> Vec<String> {
    let zh = lang == Lang::Zh;
    let mut out = Vec::new();
    if !a.established && a.random_rules > 0 {
        out.push(if zh {
            format!(
                "iptables 模式逐条匹配规则（共 {} 条），在 {} 条 -m statistic 随机规则中抽签选 Pod；IPVS 模式只评估 {} 条 iptables 规则，再用一次哈希查找找到虚拟服务，由调度算法决定。",
                a.rules_evaluated, a.random_rules, b.rules_evaluated
            )
        } else {
            format!(
                "iptables mode walks rules one by one ({} evaluated) and picks the Pod by random draws in {} -m statistic rule(s); IPVS mode evaluates {} iptables rules, then one hash lookup finds the virtual server and its scheduler decides.",
                a.rules_evaluated, a.random_rules, b.rules_evaluated
            )
        });
    } else if a.rules_evaluated != b.rules_evaluated {
        out.push(if zh {
            format!(
                "评估的规则数：iptables 模式 {}，IPVS 模式 {}。",
                a.rules_evaluated, b.rules_evaluated
            )
        } else {
            format!(
                "Rules evaluated: {} in iptables mode, {} in IPVS mode.",
                a.rules_evaluated, b.rules_evaluated
            )
        });
    }
    if let (Some(ha), Some(hb)) = (a.dnat_hook, b.dnat_hook)
        && ha != hb
    {
        out.push(if zh {
            format!(
                "DNAT 的位置不同：iptables 模式在 nat {}，IPVS 模式在 {}（VIP 绑定在 kube-ipvs0 上，路由判定为本机，IPVS 在这里接手）。",
                hook_name(ha), ipvs_hook(hb)
            )
        } else {
            format!(
                "DNAT happens in different places: iptables mode in nat {}, IPVS mode at {} (the VIP sits on kube-ipvs0, so routing treats it as local and IPVS takes over there).",
                hook_name(ha), ipvs_hook(hb)
            )
        });
    }
    if a.masquerade != b.masquerade {
        let (on, off) = if a.masquerade {
            ("iptables", "IPVS")
        } else {
            ("IPVS", "iptables")
        };
        out.push(if zh {
            format!("只有 {on} 模式做了伪装（SNAT），{off} 模式保留了客户端源地址。")
        } else {
            format!("Only {on} mode masqueraded the packet; {off} mode kept the client's source address.")
        });
    }
    if a.output != b.output {
        out.push(if zh {
            format!(
                "去向不同：iptables → {}，IPVS → {}。两种模式各自独立选择（随机抽签 vs 调度算法）。",
                or_dash(&a.output), or_dash(&b.output)
            )
        } else {
            format!(
                "They went to different places: iptables → {}, IPVS → {}. Each mode chooses on its own (random draw vs scheduler).",
                or_dash(&a.output), or_dash(&b.output)
            )
        });
    } else if zh {
        out.push(format!("两种模式都转发到 {}。", or_dash(&a.output)));
    } else {
        out.push(format!("Both modes sent it to {}.", or_dash(&a.output)));
    }
    out
}

/// IPVS's own names for the hooks it hooks into (`ip_vs_ops` in ip_vs_core.c).
fn ipvs_hook(h: Hook) -> String {
    match h {
        Hook::Input => "LOCAL_IN (INPUT)".into(),
        Hook::Output => "LOCAL_OUT (OUTPUT)".into(),
        h => hook_name(h).into(),
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "—" } else { s }
}
