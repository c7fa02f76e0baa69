// yours
