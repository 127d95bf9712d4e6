/*
 * sim_world: tenants, their reference data, and when complaints arrive. See sim_world.h.
 *
 * The numbers below are invented but shaped after what help desks report: a Zipf-like spread
 * over categories (a few kinds of complaint make most of the volume), a workload spread over
 * agents that is uneven but not extreme, two and a half times the volume at 10:00 on a Monday
 * as at 10:00 on a Saturday, and little at night.
 */
#include "sim_world.h"

#include "civil.h"
#include "ident.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- random numbers ------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void world_rng_init(world_rng *r, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t x = a ^ 0x6a09e667f3bcc909ULL;
    x = splitmix(&x) ^ b;
    x = splitmix(&x) ^ c;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t world_rng_next(world_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double world_rng_unit(world_rng *r)
{
    return (double)(world_rng_next(r) >> 11) * 0x1.0p-53;
}

int world_rng_below(world_rng *r, int n)
{
    return (int)(world_rng_unit(r) * n);
}

double world_rng_lognormal(world_rng *r, double median, double sigma)
{
    double u1 = 1.0 - world_rng_unit(r), u2 = world_rng_unit(r);
    double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    return median * exp(sigma * z);
}

int world_rng_pick(world_rng *r, const double *cum, int n)
{
    double u = world_rng_unit(r);
    for (int i = 0; i < n - 1; i++)
        if (u < cum[i])
            return i;
    return n - 1;
}

uint64_t world_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

/* a / b rounded down (b > 0): times before 1970 are negative. */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* Streams of a tenant's reference data (keyed by the tenant alone) and of its seed window. */
enum { STREAM_REFERENCE = 1, STREAM_INCIDENTS = 2 };

/* ---- the catalogue ------------------------------------------------------------------------- */

static const world_category catalogue[] = {
    { "billing",
      "Billing",
      { "Charged twice for one order", "Invoice amount does not match my order",
        "Unexpected fee on my statement", "Billed after I cancelled" },
      { "My card statement shows a charge I do not recognise.",
        "The invoice lists a service fee that was never mentioned at checkout.",
        "I was billed again even though I cancelled last month." },
      { "Duplicate charge refunded.", "Explained the fee; customer agreed.",
        "Corrected invoice sent." } },
    { "delivery",
      "Delivery",
      { "Parcel marked delivered but not received", "Courier left the parcel outside",
        "Delivery address was changed without my consent", "Tracking has not updated for days" },
      { "The tracking page says delivered, but nothing arrived.",
        "The courier left the box in the rain outside the building.",
        "The tracking number has shown the same status for a week." },
      { "Courier investigation closed; parcel found.", "Replacement shipped by express.",
        "Refunded after the courier confirmed the loss." } },
    { "refund",
      "Refund",
      { "Refund not received after return", "Partial refund only", "Refund went to an old card",
        "Still waiting for my refund" },
      { "I returned the item two weeks ago and have not seen the money.",
        "Only part of the price came back, without an explanation.",
        "The refund was sent to a card I no longer have." },
      { "Refund issued to the original payment method.", "Remaining amount refunded.",
        "Refund re-sent by bank transfer." } },
    { "damaged-item",
      "Damaged item",
      { "Item arrived broken", "Box crushed, contents damaged", "Screen cracked on arrival",
        "Missing parts in the package" },
      { "The item was broken when I opened the box.",
        "The packaging was crushed and the contents are scratched.",
        "Two of the parts listed in the manual were not in the box." },
      { "Replacement shipped.", "Refund issued; no return needed.", "Missing parts sent." } },
    { "account",
      "Account and login",
      { "Cannot log in to my account", "Password reset email never arrives",
        "Account locked after update", "Two accounts with the same email" },
      { "The login page keeps saying my password is wrong.",
        "I asked for a password reset three times and got no email.",
        "After the app update my account was locked." },
      { "Password reset link sent.", "Account unlocked.", "Accounts merged." } },
    { "wrong-item",
      "Wrong item received",
      { "Received the wrong size", "Got someone else's order", "Wrong colour delivered",
        "Item does not match the description" },
      { "I ordered a medium and received an extra large.",
        "The parcel contained items I never ordered.",
        "The colour is nothing like the photos on the product page." },
      { "Correct item shipped; return label sent.", "Exchange arranged.",
        "Refund issued; customer keeps the item." } },
    { "late-delivery",
      "Late delivery",
      { "Order is two weeks late", "Express delivery arrived late", "Delivery date keeps moving",
        "Order never shipped" },
      { "The promised delivery date passed long ago.",
        "I paid for express shipping and it took a week.",
        "The estimated delivery date has moved three times." },
      { "Shipping fee refunded.", "Order shipped with priority.",
        "Voucher issued for the delay." } },
    { "payment",
      "Payment",
      { "Payment failed but money was taken", "Card declined at checkout",
        "Cannot pay with my usual method", "Payment stuck as pending" },
      { "Checkout said the payment failed, but my bank shows the amount as taken.",
        "My card works everywhere else but is declined in your shop.",
        "The order has shown payment pending for three days." },
      { "Pending payment released by the bank.", "Payment provider fixed the issue.",
        "Order confirmed manually." } },
    { "returns",
      "Returns",
      { "Return label does not work", "Return refused at the drop-off point",
        "Return window too short", "No confirmation of my return" },
      { "The return label I printed is rejected by the carrier.",
        "The drop-off point refused my return parcel.",
        "I sent the item back but never got a confirmation." },
      { "New return label sent.", "Return accepted; refund on its way.",
        "Return window extended as a courtesy." } },
    { "product-quality",
      "Product quality",
      { "Product stopped working after a week", "Poor quality stitching", "Battery drains too fast",
        "Product smells of chemicals" },
      { "It worked for a week and then stopped turning on.",
        "The seams came apart after the first wash.",
        "The battery lasts an hour instead of the advertised ten." },
      { "Replacement unit shipped.", "Refund issued.", "Forwarded to the quality team." } },
    { "subscription",
      "Subscription",
      { "Cannot cancel my subscription", "Subscription renewed without notice",
        "Charged for a plan I did not choose", "Subscription benefits missing" },
      { "There is no cancel button in my account settings.",
        "My subscription renewed without the reminder email.",
        "I was moved to a more expensive plan without asking." },
      { "Subscription cancelled and last payment refunded.", "Plan changed back.",
        "Benefits restored." } },
    { "website",
      "Website and app",
      { "App crashes at checkout", "Website very slow", "Cannot add items to the basket",
        "Discount code field missing" },
      { "The app closes every time I press pay.",
        "Pages take more than a minute to load in the evening.",
        "The add-to-basket button does nothing on my phone." },
      { "Fixed in the latest app release.", "Workaround explained.",
        "Reported to the web team; order placed by phone." } },
    { "customer-service",
      "Customer service",
      { "No answer to my emails", "Rude answer on the phone", "Chat closed without an answer",
        "Promised callback never came" },
      { "I have written three times without any reply.", "The agent on the phone hung up on me.",
        "Nobody called back as promised." },
      { "Apologised; issue handled.", "Callback made.", "Feedback passed to the team lead." } },
    { "warranty",
      "Warranty claim",
      { "Warranty claim rejected", "Repair taking too long", "Warranty period disputed",
        "Repaired item still faulty" },
      { "My warranty claim was rejected without a reason.",
        "The repair has taken six weeks so far.",
        "The item came back from repair with the same fault." },
      { "Claim approved.", "Replacement instead of repair.", "Repair completed." } },
    { "pricing",
      "Pricing and promotions",
      { "Discount not applied", "Price changed in the basket", "Promotion code rejected",
        "Price match request" },
      { "The advertised discount was not applied at checkout.",
        "The price went up between the basket and the payment page.",
        "The promotion code from your newsletter is rejected." },
      { "Difference refunded.", "Voucher issued.", "Explained the promotion terms." } },
    { "privacy",
      "Privacy and data",
      { "Request to delete my data", "Unwanted marketing emails",
        "My data shared with third parties", "Cannot download my data" },
      { "I asked for my data to be deleted and nothing happened.",
        "I unsubscribed but still get marketing emails every day.",
        "The data export in my account fails with an error." },
      { "Data deleted; confirmation sent.", "Unsubscribed from all lists.",
        "Export sent by email." } },
};
#define CATALOGUE_N ((int)(sizeof(catalogue) / sizeof(catalogue[0])))

/* The texts of a category the caller defined (its id and name are the caller's). */
static const world_category generic = {
    "",
    "",
    { "Problem with my order", "Question about my account", "Something does not work",
      "Request for help" },
    { "Something went wrong and I would like it looked at.",
      "I have tried twice already without success.", "Nobody has been able to help me so far." },
    { "Issue resolved.", "Explained the situation; customer agreed.",
      "Fixed and confirmed with the customer." }
};

const world_mix world_mix_default = { .reassign = 0.10,
                                      .instant_ms = 1000,
                                      .reopen_first = 0.05,
                                      .reopen_again = 0.15,
                                      .reopens_max = 3,
                                      .ties = 1 };

static const char *const first_us[] = {
    "James",  "Mary",  "Robert", "Patricia", "Michael", "Jennifer", "David", "Linda",
    "Daniel", "Sarah", "Kevin",  "Ashley",   "Brian",   "Megan",    "Jason", "Laura",
    "Carlos", "Maria", "Tyrone", "Keisha",   "Andre",   "Rosa",     "Ethan", "Olivia",
    "Noah",   "Emma",  "Liam",   "Ava",      "Lucas",   "Mia",      "Owen",  "Grace",
};
static const char *const last_us[] = {
    "Smith",    "Johnson", "Williams", "Brown",  "Jones",  "Garcia", "Miller",  "Davis",
    "Martinez", "Lopez",   "Wilson",   "Taylor", "Thomas", "Moore",  "Jackson", "White",
    "Harris",   "Clark",   "Lewis",    "Young",  "Walker", "Hall",   "Allen",   "King",
};
static const char *const first_eu[] = {
    "Lukas",  "Anna",  "Jonas",  "Lena",   "Felix",  "Marie",     "Paul",   "Sophie",
    "Leon",   "Laura", "Tim",    "Julia",  "Jan",    "Sarah",     "Tobias", "Katrin",
    "Marco",  "Elena", "Pierre", "Claire", "Piotr",  "Agnieszka", "Sven",   "Ingrid",
    "Mehmet", "Ayse",  "Luca",   "Giulia", "Niklas", "Hannah",    "David",  "Emilia",
};
static const char *const last_eu[] = {
    "Mueller", "Schmidt",  "Schneider", "Fischer", "Weber",  "Meyer", "Wagner",  "Becker",
    "Schulz",  "Hoffmann", "Koch",      "Richter", "Klein",  "Wolf",  "Neumann", "Schwarz",
    "Dubois",  "Kowalski", "Rossi",     "Jensen",  "Yilmaz", "Novak", "Berg",    "Lang",
};
static const char *const first_jp[] = {
    "Haruto",  "Yui",    "Sota",   "Hina",   "Yuto",    "Aoi",   "Riku",   "Sakura",
    "Kaito",   "Mei",    "Ren",    "Yuna",   "Hiroshi", "Keiko", "Takumi", "Emi",
    "Daiki",   "Nanami", "Kenta",  "Misaki", "Shota",   "Ayaka", "Yusuke", "Mai",
    "Takeshi", "Naoko",  "Kazuki", "Rina",   "Akira",   "Yoko",  "Shin",   "Kana",
};
static const char *const last_jp[] = {
    "Sato",      "Suzuki",  "Takahashi", "Tanaka", "Watanabe", "Ito",       "Yamamoto",  "Nakamura",
    "Kobayashi", "Kato",    "Yoshida",   "Yamada", "Sasaki",   "Yamaguchi", "Matsumoto", "Inoue",
    "Kimura",    "Hayashi", "Shimizu",   "Mori",   "Abe",      "Ikeda",     "Hashimoto", "Ishikawa",
};
#define NAMES(a) ((int)(sizeof(a) / sizeof(a[0])))

/* Display names of the usual sample tenants; others get their id, capitalised. */
static const char *const known_names[][2] = {
    { "acme", "Acme Corporation" }, { "globex", "Globex Corporation" },
    { "initech", "Initech" },       { "umbrella", "Umbrella Corporation" },
    { "hooli", "Hooli" },
};

/* ---- reference data ------------------------------------------------------------------------ */

/* Fills cum[0..n) with the cumulative, normalised weights 1 / (i + 1)^s. */
static void zipf_cum(double *cum, int n, double s)
{
    double total = 0;
    for (int i = 0; i < n; i++)
        total += 1.0 / pow(i + 1, s);
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += 1.0 / pow(i + 1, s) / total;
        cum[i] = acc;
    }
    cum[n - 1] = 1.0;
}

static void lower_ascii(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* Categories (a tenant-specific subset of the catalogue, in a tenant-specific order) and agents
 * (names from the tenant's region, guessed from its zone). */
static void tenant_reference(world_tenant *t)
{
    world_rng r;
    world_rng_init(&r, STREAM_REFERENCE, t->key, 0);

    int order[CATALOGUE_N];
    for (int i = 0; i < CATALOGUE_N; i++)
        order[i] = i;
    for (int i = CATALOGUE_N - 1; i > 0; i--) {
        int j = world_rng_below(&r, i + 1), x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    t->ncategories = 8 + world_rng_below(&r, 5);
    for (int i = 0; i < t->ncategories; i++)
        t->categories[i] = &catalogue[order[i]];
    zipf_cum(t->category_cum, t->ncategories, 0.85);

    const char *const *first = first_us, *const *last = last_us;
    int nfirst = NAMES(first_us), nlast = NAMES(last_us);
    if (strncmp(t->zone, "Europe/", 7) == 0) {
        first = first_eu, last = last_eu;
        nfirst = NAMES(first_eu), nlast = NAMES(last_eu);
    } else if (strncmp(t->zone, "Asia/", 5) == 0) {
        first = first_jp, last = last_jp;
        nfirst = NAMES(first_jp), nlast = NAMES(last_jp);
    }
    t->nagents = 20 + world_rng_below(&r, 21);
    for (int i = 0; i < t->nagents; i++) {
        char id[WORLD_ID_MAX + 1];
        const char *f, *l;
        bool taken;
        do {
            f = first[world_rng_below(&r, nfirst)];
            l = last[world_rng_below(&r, nlast)];
            snprintf(id, sizeof(id), "%s.%s", f, l);
            lower_ascii(id);
            taken = false;
            for (int k = 0; k < i; k++)
                taken = taken || strcmp(t->agent_ids[k], id) == 0;
        } while (taken);
        snprintf(t->agent_ids[i], sizeof(t->agent_ids[i]), "%s", id);
        snprintf(t->agent_names[i], sizeof(t->agent_names[i]), "%s %s", f, l);
    }
    zipf_cum(t->agent_cum, t->nagents, 0.5);

    memcpy(t->name, t->id, strlen(t->id) + 1); /* name is the larger */
    t->name[0] =
        (char)(t->name[0] >= 'a' && t->name[0] <= 'z' ? t->name[0] - 'a' + 'A' : t->name[0]);
    for (size_t i = 0; i < sizeof(known_names) / sizeof(known_names[0]); i++)
        if (strcmp(t->id, known_names[i][0]) == 0)
            snprintf(t->name, sizeof(t->name), "%s", known_names[i][1]);
}

/* ---- tenants ------------------------------------------------------------------------------- */

/* Every tenant's share by its position in the list: 1 / (i + 1)^0.85, normalised. */
static void shares_by_position(world *w)
{
    double total = 0;
    for (int i = 0; i < w->ntenants; i++)
        total += 1.0 / pow(i + 1, 0.85);
    for (int i = 0; i < w->ntenants; i++)
        w->tenants[i].share = 1.0 / pow(i + 1, 0.85) / total;
}

/* Checks a tenant's id and zone and that w has room for it: tz, or NULL with the reason. */
static const tz_zone *tenant_check(const world *w, const char *id, const char *zone,
                                   const char *what, char *err, size_t errlen)
{
    if (w->ntenants == WORLD_TENANTS_MAX) {
        snprintf(err, errlen, "%s: at most %d tenants", what, WORLD_TENANTS_MAX);
        return NULL;
    }
    enum ident_problem problem = ident_check(id);
    if (problem != IDENT_OK) {
        snprintf(err, errlen, "%s: tenant id \"%s\": %s", what, id, ident_problem_text(problem));
        return NULL;
    }
    char why[256];
    const tz_zone *tz = strlen(zone) <= WORLD_ZONE_MAX ? tz_get(zone, why, sizeof(why)) : NULL;
    if (!tz) {
        snprintf(err, errlen, "%s: time zone of \"%s\": %s", what, id,
                 strlen(zone) > WORLD_ZONE_MAX ? "longer than 64 bytes" : why);
        return NULL;
    }
    for (int i = 0; i < w->ntenants; i++)
        if (strcmp(w->tenants[i].id, id) == 0) {
            snprintf(err, errlen, "%s: \"%s\" is listed twice", what, id);
            return NULL;
        }
    return tz;
}

/* Fills the next tenant of w with id, zone (both checked) and its reference data. */
static world_tenant *tenant_fill(world *w, const char *id, const char *zone, const tz_zone *tz)
{
    world_tenant *t = &w->tenants[w->ntenants];
    memset(t, 0, sizeof(*t));
    memcpy(t->id, id, strlen(id) + 1); /* both lengths were checked */
    memcpy(t->zone, zone, strlen(zone) + 1);
    t->tz = tz;
    t->key = world_hash(t->id);
    t->mix = world_mix_default;
    tenant_reference(t);
    return t;
}

int world_parse_tenants(world *w, const char *spec, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    const char *p = spec;
    while (*p) {
        size_t len = strcspn(p, ",");
        char item[WORLD_ID_MAX + WORLD_ZONE_MAX + 2];
        if (len == 0 || len >= sizeof(item)) {
            snprintf(err, errlen, "--tenants: \"%.*s\" is not id:Zone/Name", (int)len, p);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        char *colon = strchr(item, ':');
        const char *zone = "UTC";
        if (colon) {
            *colon = '\0';
            zone = colon + 1;
        }
        const tz_zone *tz = tenant_check(w, item, zone, "--tenants", err, errlen);
        if (!tz)
            return -1;
        tenant_fill(w, item, zone, tz);
        w->ntenants++;
        p += len;
        if (*p == ',')
            p++;
    }
    if (w->ntenants == 0) {
        snprintf(err, errlen, "--tenants: at least one tenant");
        return -1;
    }
    shares_by_position(w);
    return 0;
}

/* "b-x" as a name: "B x" (separators as spaces, the first letter capitalised). */
static void name_of_id(char *out, size_t len, const char *id)
{
    snprintf(out, len, "%s", id);
    for (char *c = out; *c; c++)
        if (*c == '-' || *c == '_' || *c == '.')
            *c = ' ';
    if (out[0] >= 'a' && out[0] <= 'z')
        out[0] = (char)(out[0] - 'a' + 'A');
}

/*
 * Checks the caller's refs (kind "category" or "agent") and fills cum from their weights, the
 * entries after the last used one at exactly 1.0 (so world_rng_pick never lands on them).
 */
static int refs_check(const world_ref *v, int n, int max, const char *kind, double *cum, char *err,
                      size_t errlen)
{
    double total = 0, acc = 0;
    if (n < 0 || n > max || (n > 0 && !v)) {
        snprintf(err, errlen, "at most %d %s ids", max, kind);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        size_t len = v[i].id ? strlen(v[i].id) : 0;
        if (len == 0 || len > WORLD_ID_MAX) {
            snprintf(err, errlen, "%s id %d: 1 to %d bytes", kind, i, WORLD_ID_MAX);
            return -1;
        }
        if (v[i].name && strlen(v[i].name) > WORLD_NAME_MAX) {
            snprintf(err, errlen, "%s \"%s\": a name of at most %d bytes", kind, v[i].id,
                     WORLD_NAME_MAX);
            return -1;
        }
        if (!(v[i].weight >= 0)) {
            snprintf(err, errlen, "%s \"%s\": a weight below 0", kind, v[i].id);
            return -1;
        }
        for (int k = 0; k < i; k++)
            if (strcmp(v[k].id, v[i].id) == 0) {
                snprintf(err, errlen, "%s \"%s\" is listed twice", kind, v[i].id);
                return -1;
            }
        total += v[i].weight;
    }
    if (n > 0 && !(total > 0)) {
        snprintf(err, errlen, "every %s has weight 0: at least one must be used", kind);
        return -1;
    }
    int last = 0;
    for (int i = 0; i < n; i++) {
        acc += v[i].weight / total;
        cum[i] = acc;
        last = v[i].weight > 0 ? i : last;
    }
    for (int i = last; i < n; i++)
        cum[i] = 1.0;
    return 0;
}

int world_add_tenant(world *w, const world_tenant_def *d, char *err, size_t errlen)
{
    const char *zone = d->zone ? d->zone : "UTC";
    double ccum[WORLD_CATEGORIES_MAX], acum[WORLD_AGENTS_MAX];
    char why[200];
    const tz_zone *tz = tenant_check(w, d->id ? d->id : "", zone, "tenant", err, errlen);
    if (!tz)
        return -1;
    if (d->name && strlen(d->name) > WORLD_NAME_MAX) {
        snprintf(err, errlen, "tenant \"%s\": a name of at most %d bytes", d->id, WORLD_NAME_MAX);
        return -1;
    }
    if (refs_check(d->categories, d->ncategories, WORLD_CATEGORIES_MAX, "category", ccum, why,
                   sizeof(why)) != 0 ||
        refs_check(d->agents, d->nagents, WORLD_AGENTS_MAX, "agent", acum, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "tenant \"%s\": %s", d->id, why);
        return -1;
    }
    world_tenant *t = tenant_fill(w, d->id, zone, tz);
    if (d->name)
        snprintf(t->name, sizeof(t->name), "%s", d->name);
    if (d->ncategories > 0) {
        t->ncategories = d->ncategories;
        for (int i = 0; i < d->ncategories; i++) {
            world_category *c = &t->own[i];
            *c = generic;
            snprintf(c->id, sizeof(c->id), "%s", d->categories[i].id);
            if (d->categories[i].name)
                snprintf(c->name, sizeof(c->name), "%s", d->categories[i].name);
            else
                name_of_id(c->name, sizeof(c->name), c->id);
            t->categories[i] = c;
            t->category_cum[i] = ccum[i];
        }
    }
    if (d->nagents > 0) {
        t->nagents = d->nagents;
        for (int i = 0; i < d->nagents; i++) {
            snprintf(t->agent_ids[i], sizeof(t->agent_ids[i]), "%s", d->agents[i].id);
            if (d->agents[i].name)
                snprintf(t->agent_names[i], sizeof(t->agent_names[i]), "%s", d->agents[i].name);
            else
                name_of_id(t->agent_names[i], sizeof(t->agent_names[i]), t->agent_ids[i]);
            t->agent_cum[i] = acum[i];
        }
    }
    w->ntenants++;
    shares_by_position(w);
    return 0;
}

void world_set_shares(world *w, const double *shares)
{
    double total = 0;
    for (int i = 0; i < w->ntenants; i++)
        total += shares[i];
    for (int i = 0; i < w->ntenants; i++)
        w->tenants[i].share = total > 0 ? shares[i] / total : 0;
}

void world_set_mix(world *w, const world_mix *m)
{
    for (int i = 0; i < w->ntenants; i++)
        w->tenants[i].mix = *m;
}

void world_split(world *w, int64_t total)
{
    int64_t given = 0;
    int first = 0;
    for (int i = 0; i < w->ntenants; i++) {
        w->tenants[i].count = (int64_t)((double)total * w->tenants[i].share);
        given += w->tenants[i].count;
    }
    while (first < w->ntenants - 1 && !(w->tenants[first].share > 0))
        first++;
    w->tenants[first].count += total - given;
}

/* ---- local time ---------------------------------------------------------------------------- */

int64_t world_offset_s(const world_tenant *t, int64_t utc_ms)
{
    return tz_offset(t->tz, floor_div(utc_ms, 1000));
}

/* ---- arrivals ------------------------------------------------------------------------------ */

/* Relative volume by local weekday (Monday first) and local hour. */
static const double weekday_weight[7] = { 1.15, 1.05, 1.0, 1.0, 0.9, 0.45, 0.35 };
static const double hour_weight[24] = { 0.12, 0.08, 0.06, 0.05, 0.06, 0.1,  0.22, 0.45,
                                        0.8,  1.0,  1.0,  0.95, 0.85, 0.95, 1.0,  0.95,
                                        0.85, 0.7,  0.55, 0.5,  0.48, 0.42, 0.3,  0.2 };
#define GROWTH_START  0.85 /* the rate at the window's start; it ends 0.35 higher */
#define GROWTH        0.35
#define SEASON_PEAK   0.3 /* the extra volume at the height of the year-end peak */
#define INCIDENT_PEAK 5.0 /* the most an incident adds, as a multiple of the normal rate */
#define RATE_MAX      ((GROWTH_START + GROWTH) * (1 + SEASON_PEAK) * 1.15 * 1.0 * (1 + INCIDENT_PEAK))

/* Whether entry i of a cumulative weight table has a weight above 0. */
static bool used(const double *cum, int i)
{
    return cum[i] > (i > 0 ? cum[i - 1] : 0);
}

void world_set_window(world_tenant *t, uint64_t seed, int64_t end_ms, int days)
{
    world_rng r;
    t->end_ms = end_ms;
    t->start_ms = end_ms - (int64_t)days * WORLD_DAY_MS;
    world_rng_init(&r, seed, t->key, STREAM_INCIDENTS);
    int64_t span = t->end_ms - t->start_ms;
    for (int i = 0; i < WORLD_INCIDENTS; i++) {
        world_incident *inc = &t->incidents[i];
        for (int tries = 0; tries < 100; tries++) {
            /* Away from the window's edges (the first complaint opens it, sim_gen.c). */
            inc->start_ms = t->start_ms + (int64_t)((0.05 + 0.9 * world_rng_unit(&r)) * span);
            bool apart = true;
            for (int k = 0; k < i; k++)
                apart = apart && llabs(inc->start_ms - t->incidents[k].start_ms) > span / 8;
            if (apart)
                break;
        }
        inc->peak = 2.5 + (INCIDENT_PEAK - 2.5) * world_rng_unit(&r);
        inc->tau_ms = (10 + 20 * world_rng_unit(&r)) * WORLD_HOUR_MS;
        inc->category = world_rng_below(&r, t->ncategories < 6 ? t->ncategories : 6);
        while (!used(t->category_cum, inc->category)) /* the next category in use floods */
            inc->category = (inc->category + 1) % t->ncategories;
    }
}

/* The extra rate of incident i at ms, as a multiple of the normal rate. */
static double incident_rate(const world_incident *inc, int64_t ms)
{
    double dt = (double)(ms - inc->start_ms);
    if (dt < 0 || dt > 8 * inc->tau_ms)
        return 0;
    return inc->peak * exp(-dt / inc->tau_ms);
}

/* The normal (incident-free) arrival rate of t at ms, relative. */
static double base_rate(const world_tenant *t, int64_t ms)
{
    int64_t local_s = floor_div(ms, 1000) + world_offset_s(t, ms);
    int64_t day = floor_div(local_s, 86400);
    int hour = (int)((local_s - day * 86400) / 3600);
    int y, m, d;
    civil_date(day, &y, &m, &d);
    double doy = (double)(day - civil_days(y, 1, 1));
    double span = (double)(t->end_ms - t->start_ms);
    double growth = GROWTH_START + GROWTH * (span > 0 ? (double)(ms - t->start_ms) / span : 1);
    /* Black Friday to Christmas, and the returns in early January. */
    double x = (doy - 340) / 18, z = (doy - 8) / 8;
    double season = 1 + SEASON_PEAK * exp(-x * x) + 0.15 * exp(-z * z);
    return growth * season * weekday_weight[civil_weekday(day) - 1] * hour_weight[hour];
}

int64_t world_sample_time(const world_tenant *t, world_rng *r, int *incident)
{
    int64_t span = t->end_ms - t->start_ms;
    for (;;) {
        int64_t ms = t->start_ms + (int64_t)(world_rng_unit(r) * (double)span);
        double extra[WORLD_INCIDENTS], sum = 0;
        for (int i = 0; i < WORLD_INCIDENTS; i++)
            sum += extra[i] = incident_rate(&t->incidents[i], ms);
        double base = base_rate(t, ms);
        if (world_rng_unit(r) * RATE_MAX >= base * (1 + sum))
            continue;
        /* Accepted: it belongs to incident i with that incident's share of the rate. */
        double u = world_rng_unit(r) * (1 + sum);
        *incident = -1;
        for (int i = 0; i < WORLD_INCIDENTS; i++) {
            if (u < extra[i]) {
                *incident = t->incidents[i].category;
                break;
            }
            u -= extra[i];
        }
        return ms;
    }
}

int64_t world_work_time(const world_tenant *t, int64_t ms, world_rng *r)
{
    int64_t off = world_offset_s(t, ms);
    int64_t local_s = floor_div(ms, 1000) + off;
    int64_t day = floor_div(local_s, 86400);
    int64_t sec = local_s - day * 86400;
    int weekday = civil_weekday(day);
    if (weekday <= 5 && sec >= 8 * 3600 && sec < 18 * 3600)
        return ms;
    if (weekday > 5 || sec >= 18 * 3600) /* else: later the same morning */
        do
            day++;
        while (civil_weekday(day) > 5);
    int64_t start_local_s = day * 86400 + 8 * 3600;
    int64_t utc_ms = (start_local_s - off) * 1000;
    utc_ms = (start_local_s - world_offset_s(t, utc_ms)) * 1000; /* the offset of that morning */
    utc_ms += (int64_t)(world_rng_unit(r) * 75 * WORLD_MINUTE_MS);
    return utc_ms > ms ? utc_ms : ms;
}

int world_pick_category(const world_tenant *t, world_rng *r)
{
    return world_rng_pick(r, t->category_cum, t->ncategories);
}

int world_pick_agent(const world_tenant *t, world_rng *r)
{
    return world_rng_pick(r, t->agent_cum, t->nagents);
}

bool world_agent_works(const world_tenant *t, int agent)
{
    return used(t->agent_cum, agent);
}

int world_agent_index(const world_tenant *t, const char *id)
{
    for (int a = 0; a < t->nagents; a++)
        if (strcmp(t->agent_ids[a], id) == 0)
            return a;
    return -1;
}
