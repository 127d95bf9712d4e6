#include "hist.h"

#include <math.h>

int hist_bucket(int64_t seconds)
{
    if (seconds <= 0)
        return 0;
    double s = (double)seconds;
    int b = 1 + (int)floor(log(s) / log(HIST_GAMMA));
    /* Guard the edges against rounding: G^(b-1) <= s < G^b. */
    while (b > 1 && pow(HIST_GAMMA, b - 1) > s)
        b--;
    while (pow(HIST_GAMMA, b) <= s)
        b++;
    return b;
}

double hist_value(int b)
{
    if (b <= 0)
        return 0.0;
    return 2.0 * pow(HIST_GAMMA, b) / (HIST_GAMMA + 1.0);
}
