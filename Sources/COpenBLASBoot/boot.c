#include "COpenBLASBoot.h"
