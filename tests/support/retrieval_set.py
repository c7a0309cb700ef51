"""A small retrieval test set, generated (seeded, so the same on every run) for these tests.

People with overlapping first names and surnames, each described by five passages (where
they live, their work, a hobby, a pet, a dish), written from several templates. Each
query asks, in other words than the passages, who has one value of an attribute ("Who
makes a living as a locksmith?"): its relevant passages are those of every person with
that value (about six), among hundreds of passages of the same shape about other values,
so recall@10 is below 1 for float vectors and drops when the vectors lose information.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST = [
    "Mara",
    "Tomas",
    "Ines",
    "Jonas",
    "Aiko",
    "Ravi",
    "Lena",
    "Omar",
    "Sofia",
    "Pavel",
    "Nadia",
    "Kofi",
    "Elena",
    "Marco",
    "Yuki",
    "Priya",
    "Lucas",
    "Amara",
    "Felix",
    "Hana",
    "Diego",
    "Ingrid",
    "Samir",
    "Clara",
    "Mateo",
    "Freya",
    "Tariq",
    "Alma",
    "Viktor",
    "Noor",
]
LAST = [
    "Lindqvist",
    "Okafor",
    "Moreau",
    "Tanaka",
    "Novak",
    "Haddad",
    "Silva",
    "Kowalski",
    "Brennan",
    "Ivanova",
    "Mensah",
    "Rossi",
    "Fischer",
    "Costa",
    "Nakamura",
    "Duarte",
    "Weber",
    "Petrov",
    "Larsen",
    "Adeyemi",
    "Quinn",
    "Sato",
    "Horvat",
    "Almeida",
    "Keller",
    "Dubois",
    "Nilsen",
    "Varga",
    "Ortiz",
    "Sharma",
]
CITIES = [
    "Porto",
    "Lyon",
    "Krakow",
    "Osaka",
    "Nairobi",
    "Valparaiso",
    "Tallinn",
    "Bergen",
    "Seville",
    "Bologna",
    "Ghent",
    "Tbilisi",
    "Hanoi",
    "Quebec City",
    "Cork",
    "Leipzig",
    "Izmir",
    "Cusco",
    "Adelaide",
    "Busan",
    "Marrakesh",
    "Ljubljana",
    "Halifax",
    "Trieste",
    "Pune",
]
JOBS = [
    "veterinary surgeon",
    "bridge engineer",
    "pastry chef",
    "court interpreter",
    "airline pilot",
    "marine biologist",
    "tax accountant",
    "piano tuner",
    "emergency nurse",
    "software tester",
    "furniture restorer",
    "meteorologist",
    "school librarian",
    "locksmith",
    "dental hygienist",
    "archaeologist",
    "bus driver",
    "wine maker",
    "patent lawyer",
    "glass blower",
    "beekeeper",
    "tailor",
    "radio host",
    "firefighter",
    "botanist",
]
HOBBIES = [
    "rock climbing",
    "playing the cello",
    "birdwatching",
    "restoring old motorcycles",
    "chess",
    "knitting",
    "salsa dancing",
    "astronomy",
    "pottery",
    "long-distance running",
    "origami",
    "fly fishing",
    "woodcarving",
    "kite surfing",
    "collecting stamps",
    "gardening",
    "fencing",
    "baking sourdough",
    "sailing",
    "calligraphy",
    "geocaching",
    "rowing",
    "painting watercolours",
    "mountain biking",
    "beatboxing",
]
PETS = [
    "a grey parrot",
    "a three-legged cat",
    "two guinea pigs",
    "a Dalmatian",
    "a tortoise",
    "an old sheepdog",
    "a pair of goldfish",
    "a ferret",
    "a rescue greyhound",
    "a bearded dragon",
    "a rabbit",
    "a canary",
]
DISHES = [
    "mushroom risotto",
    "lentil soup",
    "fish tacos",
    "beef goulash",
    "vegetable curry",
    "potato gnocchi",
    "chicken tagine",
    "pad thai",
    "spinach lasagne",
    "paella",
    "ramen",
    "shakshuka",
    "pierogi",
    "falafel",
    "moussaka",
    "ceviche",
    "bibimbap",
    "ratatouille",
    "jollof rice",
    "pho",
]

PASSAGES = {
    "city": (
        "{name} has lived in {value} for the last nine years.",
        "{name} rents a small flat in the old town of {value}.",
        "After university, {name} settled in {value} and never left.",
    ),
    "job": (
        "{name} works as a {value}.",
        "By profession, {name} is a {value} with many years of experience.",
        "{name} earns a living as a {value}.",
    ),
    "hobby": (
        "In their free time, {name} enjoys {value}.",
        "On weekends {name} spends hours {value}.",
        "{name}'s favourite pastime is {value}.",
    ),
    "pet": (
        "{name} shares the house with {value}.",
        "At home, {name} looks after {value}.",
        "{name} adopted {value} a few years ago.",
    ),
    "dish": (
        "When friends visit, {name} cooks {value}.",
        "{name}'s signature dish is {value}.",
        "{name} could eat {value} every day.",
    ),
}
QUERIES = {
    "city": ("Which people make their home in {value}?", "residents of {value}"),
    "job": ("Who makes a living as a {value}?", "people employed as {value}"),
    "hobby": ("Who spends free time {value}?", "people whose pastime is {value}"),
    "pet": ("Who keeps {value} as a pet?", "owners of {value}"),
    "dish": ("Who likes to cook {value}?", "people who love eating {value}"),
}
VALUES = {"city": CITIES, "job": JOBS, "hobby": HOBBIES, "pet": PETS, "dish": DISHES}


@dataclass(frozen=True)
class RetrievalSet:
    passages: list[str]
    queries: list[str]
    relevant: list[set[int]]  # for each query, the indices of its relevant passages


def retrieval_set(people: int = 160, seed: int = 27) -> RetrievalSet:
    rng = random.Random(seed)
    names = rng.sample([f"{f} {s}" for f in FIRST for s in LAST], people)
    passages: list[str] = []
    having: dict[tuple[str, str], set[int]] = {}
    for name in names:
        for attribute, values in VALUES.items():
            value = rng.choice(values)
            having.setdefault((attribute, value), set()).add(len(passages))
            passages.append(rng.choice(PASSAGES[attribute]).format(name=name, value=value))
    queries: list[str] = []
    relevant: list[set[int]] = []
    for (attribute, value), rows in sorted(having.items()):
        queries.append(rng.choice(QUERIES[attribute]).format(value=value))
        relevant.append(rows)
    return RetrievalSet(passages, queries, relevant)
