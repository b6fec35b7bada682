"""The texts pipeline cases run on: English passages written for this harness, in three length classes.

Each passage comes with a question whose answer is a span of it (for question answering). Token counts, with the
BERT uncased WordPiece tokenizer of the packaged MiniLM: short 16-32, medium 100-150, long 300-380 (under the 512
positions of BERT-shaped models, question included). A pipeline case takes them round-robin, one per call.
"""

from __future__ import annotations

SHORT = [
    ("The library opens at nine in the morning and closes at six in the evening on weekdays.",
     "When does the library open?"),
    ("Maria planted three apple trees behind the old barn last spring with her grandfather.",
     "What did Maria plant?"),
    ("The train to Lyon leaves from platform four at twenty past eight every morning.",
     "Which platform does the train leave from?"),
    ("Copper is a soft metal that conducts heat and electricity very well, so it is used in wires.",
     "What does copper conduct well?"),
    ("Our team meets every Thursday afternoon in the small room next to the kitchen.",
     "When does the team meet?"),
    ("The bridge over the river was rebuilt in stone after the flood of 1910.",
     "What was the bridge rebuilt in?"),
    ("A young fox crossed the snowy field just before sunrise, looking for mice.",
     "What was the fox looking for?"),
    ("The recipe needs two cups of flour, one egg and a pinch of salt.",
     "How much flour does the recipe need?"),
]

MEDIUM = [
    ("The village of Arnsby sits on a low hill between two rivers. For centuries its people made a living from"
     " wool, and the old market hall, built in 1620, still stands in the square. Every October the village holds a"
     " fair where farmers sell sheep, cheese and cider, and children race wooden boats on the smaller river. The"
     " railway reached Arnsby in 1871, which brought visitors from the city and a small hotel near the station."
     " Today most residents work in nearby towns, but the fair still draws thousands of people each year.",
     "When was the market hall built?"),
    ("Honey bees live in colonies of tens of thousands of workers, a few hundred drones and a single queen. The"
     " workers are all female; they clean the hive, feed the young, build wax comb and, later in life, fly out to"
     " collect nectar and pollen. A forager tells her sisters where flowers are by performing a waggle dance, whose"
     " angle shows the direction relative to the sun and whose length shows the distance. In winter the bees"
     " cluster together and shiver their flight muscles to keep the centre of the cluster warm.",
     "How does a forager tell her sisters where flowers are?"),
    ("The first practical steam engine was built by Thomas Newcomen in 1712 to pump water out of coal mines. It was"
     " large and wasted most of its fuel, because the cylinder was cooled and heated again on every stroke. Decades"
     " later James Watt added a separate condenser, so the cylinder could stay hot, and the engine used far less"
     " coal. Watt and his partner Matthew Boulton sold engines to mills and factories across Britain, and steam"
     " power soon drove looms, hammers, ships and, eventually, locomotives.",
     "Who built the first practical steam engine?"),
    ("Sourdough bread is leavened by a starter, a mixture of flour and water in which wild yeasts and lactic acid"
     " bacteria grow together. The bakers feed the starter every day with fresh flour and water. To make a loaf,"
     " some of the starter is mixed into a dough that then rises slowly for many hours, often overnight in a cool"
     " place. The bacteria produce acids that give the bread its sour taste and help it keep for longer, while the"
     " yeasts produce the gas that makes the dough rise.",
     "What gives sourdough bread its sour taste?"),
    ("The city council voted on Tuesday to turn the old tram depot into a public library and community centre."
     " The building, which has stood empty since the last trams stopped running in 1968, will keep its brick"
     " facade and iron roof. Inside, architects plan a reading hall, rooms for evening classes and a cafe. Work is"
     " expected to begin next summer and to take about two years. The project will be paid for by the city and by"
     " a grant from the national heritage fund. Local residents will be asked"
     " to suggest a name for the new building.",
     "What will the old tram depot become?"),
    ("Glaciers form where more snow falls in winter than melts in summer. Over many years the snow is pressed into"
     " dense ice, which becomes so heavy that it begins to flow downhill under its own weight. As a glacier moves"
     " it scrapes the rock beneath it, carving deep valleys shaped like the letter U and carrying stones far from"
     " where they came from. Many glaciers in the Alps have lost much of their ice over the last century, and some"
     " small ones have disappeared entirely, leaving only bare rock and piles of stones behind.",
     "What shape are the valleys carved by glaciers?"),
    ("Ada Lovelace was an English mathematician who worked with Charles Babbage on his proposed Analytical Engine,"
     " a mechanical general purpose computer that was never completed. In 1843 she translated an article about the"
     " machine and added a long set of notes of her own. One of these notes describes a method for calculating"
     " Bernoulli numbers with the engine, and it is often called the first computer program. She also suggested"
     " that such a machine might one day compose music. A programming"
     " language used by the defence department was later named Ada in her honour.",
     "What did Lovelace suggest the machine might one day do?"),
    ("Good running shoes are chosen for the runner, not for their looks. A shop assistant may watch you run on a"
     " treadmill to see how your foot lands and how much it rolls inward. Shoes with more cushioning suit long,"
     " slow runs on roads, while lighter shoes with less padding suit races and fast training. Most running shoes"
     " lose their cushioning after about eight hundred kilometres, so a runner who trains every day may need a new"
     " pair every few months. Old shoes can still be worn for walking or for gardening.",
     "When do most running shoes lose their cushioning?"),
]

LONG = [
    ("The lighthouse on Kerrow Point was built in 1854 after a winter in which four ships were wrecked on the rocks"
     " below the headland. Its tower is twenty six metres tall and made of granite blocks cut from a quarry on the"
     " other side of the bay. The stones were carried across the water on flat barges and lifted into place with a"
     " wooden crane powered by two horses walking in a circle. The first lamp burned whale oil, and its light was"
     " focused by a large glass lens made in Paris, which could be seen from more than thirty kilometres away on a"
     " clear night. Three keepers lived at the station with their families. They took turns to watch the lamp"
     " through the night, trimming the wick and winding the clockwork that turned the lens, and during the day they"
     " cleaned the glass, painted the iron railings and recorded the weather in a logbook. Supplies arrived by boat"
     " once a fortnight, but in bad weather the families could be cut off for weeks, so they kept goats, grew"
     " potatoes in a walled garden and stored salted fish for the winter. In 1921 the oil lamp was replaced by an"
     " electric one fed from a diesel generator, and in 1987 the light was made fully automatic, controlled from an"
     " office on the mainland. The last keeper, a man named Robert Tully, left the point in the autumn of that year"
     " after thirty one years of service. The keepers' cottages are now a small museum, where visitors can read the"
     " old logbooks, climb the spiral staircase of one hundred and twelve steps and look out over the same rocks"
     " that the light was built to guard.",
     "Who was the last keeper of the lighthouse?"),
    ("Tomatoes came to Europe from the Americas in the sixteenth century, but for a long time many Europeans"
     " regarded them with suspicion. The plant belongs to the nightshade family, which also includes several"
     " poisonous species, and its leaves do contain small amounts of toxic compounds. In Italy and Spain, however,"
     " cooks began to use the fruit early, and by the end of the seventeenth century recipes for tomato sauce were"
     " being printed in Naples. In northern Europe and in North America the tomato was grown mostly as an ornamental"
     " plant until the nineteenth century, when canning made it possible to keep the fruit for the whole year and"
     " tomato soup and ketchup became popular. Today there are thousands of varieties, from tiny cherry tomatoes to"
     " large beefsteak tomatoes that can weigh more than half a kilogram. Gardeners usually start the seeds indoors"
     " in early spring and plant the seedlings outside once the danger of frost has passed, because the plants are"
     " damaged by cold. They need plenty of sun, regular watering and support from stakes or cages as they grow."
     " Uneven watering can cause the fruit to crack or to develop dark patches at the bottom, a problem known as"
     " blossom end rot, which is linked to a shortage of calcium in the growing fruit. Commercial growers often"
     " pick tomatoes while they are still green and let them ripen during transport, which is one reason why shop"
     " tomatoes often taste less sweet than those picked ripe from a garden in late summer. Some farmers' markets"
     " now sell older varieties grown for their flavour rather than for their ability to survive long journeys.",
     "What problem is linked to a shortage of calcium?"),
    ("When the small town of Bellmore decided to build a new school, the planning committee asked the pupils what"
     " they wanted. The answers filled three boxes. Many children asked for more light and for windows they could"
     " see out of while sitting down. Others wanted somewhere quiet to read, a bigger hall for plays and concerts,"
     " and a garden where they could grow vegetables. Several asked for toilets that locked properly, and one boy"
     " asked for a slide from the first floor to the playground. The architects took most of these ideas seriously."
     " The finished building has classrooms along the south side with tall windows that start low on the wall, and"
     " a roof that overhangs far enough to keep out the summer sun while letting in the low winter light. A library"
     " with soft chairs sits at the centre of the building, separated from the corridors by glass walls, so that it"
     " feels open but stays quiet. The hall can be divided into two rooms with a folding wall, and it has a small"
     " stage with lights that the older pupils learn to operate. Behind the school there is a garden with raised"
     " beds, a greenhouse and a pond, and each class looks after one of the beds through the year. The slide was not"
     " built, because the safety inspectors would not allow it, but the architects added a wide staircase with"
     " steps deep enough to sit on, which the pupils use as seats during assemblies and lunch breaks. Two years"
     " after the school opened, teachers reported that attendance had risen and that pupils spent more time reading.",
     "What did the architects add instead of the slide?"),
    ("The octopus is one of the most unusual animals in the sea. It has eight arms lined with suckers, three hearts"
     " and blue blood, which carries oxygen using a copper based protein rather than the iron based one found in"
     " human blood. Two of its hearts pump blood through the gills, while the third pumps it through the rest of"
     " the body. An octopus has no bones at all, so it can squeeze through any gap larger than its beak, the only"
     " hard part of its body. Many species can change the colour and texture of their skin within a fraction of a"
     " second, using thousands of small cells filled with pigment, and they use this ability both to hide from"
     " predators and to signal to each other. Octopuses are also known for their intelligence. In laboratories they"
     " have learned to open jars, to find their way through simple mazes and to recognise individual people, and"
     " some have escaped from their tanks at night to visit neighbouring tanks in search of food. About two thirds"
     " of their nerve cells are found in the arms rather than in the brain, which allows each arm to taste, touch"
     " and react on its own. Despite these abilities, most octopuses live only one or two years. A female lays"
     " tens of thousands of eggs in a den and guards them for weeks or even months, cleaning them and blowing fresh"
     " water over them, and she usually stops eating during that time. She dies soon after the young hatch, and the"
     " tiny octopuses drift in the open water for a while before settling on the sea floor.",
     "How many hearts does an octopus have?"),
    ("For most of history people measured time by the sun. Noon was the moment when the sun stood highest in the"
     " sky, and because that moment comes a little later the further west you go, every town kept its own local"
     " time. This caused few problems while travel was slow, but the railways changed everything. A train leaving"
     " one town at a certain hour might arrive in another town whose clocks were several minutes ahead or behind,"
     " and printed timetables became very confusing. In Britain the railway companies solved the problem in the"
     " eighteen forties by adopting a single time for the whole network, based on the clocks at the Royal"
     " Observatory in Greenwich. Many towns soon set their public clocks to railway time as well, although some kept"
     " two minute hands for a while, one showing local time and the other showing Greenwich time. In North America"
     " the distances were much larger, and in 1883 the railways divided the continent into several time zones, each"
     " one hour apart. The following year an international conference in Washington chose the meridian passing"
     " through Greenwich as the prime meridian, the line of zero longitude from which all other longitudes are"
     " measured. Over the following decades most countries adopted time zones based on whole hours from Greenwich,"
     " although a few still use offsets of half an hour or even a quarter of an hour. Today most clocks are set from"
     " atomic time signals, and a leap second is occasionally added to keep them in step with the turning earth."
     " Phones and computers"
     " adjust their clocks automatically, so few people notice when this happens.",
     "What did the railways divide North America into in 1883?"),
    ("Learning to play the violin is famously slow. A beginner must learn to hold the instrument under the chin and"
     " the bow in the right hand, with the fingers curved and relaxed, while keeping the bow straight and at the"
     " right distance from the bridge. At first the sound is often thin and scratchy, because the pressure and speed"
     " of the bow are not yet matched. The left hand presents its own difficulties. Unlike a guitar, the violin has"
     " no frets, so the player must learn exactly where to place each finger to play in tune, and a difference of a"
     " few millimetres is easy to hear. Teachers often put small strips of tape on the fingerboard to mark the first"
     " positions, and remove them once the student's ear and hand have learned where the notes are. Most teachers"
     " recommend short practice sessions every day rather than long sessions once a week, since the muscles and the"
     " ear improve through regular repetition. Scales and simple studies build the technique needed for real music,"
     " and playing with other people, in a school orchestra or a small group, teaches the student to listen and to"
     " keep time. After a few years of steady work a student can usually play simple pieces by well known composers,"
     " and some go on to learn vibrato, a slight regular movement of the left hand that makes the tone warmer. It"
     " can take ten years or more to reach a professional level, which is why many violinists begin as young"
     " children, often at the age of five or six, with instruments made in smaller sizes for small arms.",
     "What do teachers put on the fingerboard to mark the first positions?"),
    ("The desert of the Atacama in northern Chile is one of the driest places on earth. Some weather stations there"
     " have never recorded any rain at all, and parts of the desert may have gone without significant rainfall for"
     " hundreds of years. The dryness has several causes. The desert lies between two mountain ranges, the Andes to"
     " the east and a coastal range to the west, which block moist air from both sides. A cold ocean current flowing"
     " north along the coast cools the air above the sea, so that it holds little water and rarely forms rain clouds."
     " Instead, a thick fog called the camanchaca often rolls in from the ocean in the early morning, and some"
     " villages catch water from it with large nets that collect droplets as the fog passes through them. Despite"
     " the harsh conditions, people have lived in the Atacama for thousands of years, farming in oases and along the"
     " few rivers that flow down from the mountains. In the nineteenth century the desert became valuable because"
     " of its deposits of sodium nitrate, which was used as fertiliser and in explosives, and several countries"
     " fought over the region. Today the Atacama is known for its copper mines and for its astronomical"
     " observatories. The high altitude, the dry air and the lack of light from cities make the sky there"
     " exceptionally clear, and several of the largest telescopes in the world have been built on its mountains."
     " Scientists also study the soil of the desert, because it is so dry and poor in life that it resembles the"
     " surface of Mars, and instruments intended for missions to Mars are sometimes tested there first.",
     "What is the thick morning fog called?"),
    ("Public libraries as we know them today, open to everyone and free of charge, are a fairly recent idea. For"
     " centuries most collections of books belonged to monasteries, universities or wealthy families, and ordinary"
     " people had little access to them. In the eighteenth century subscription libraries appeared, where members"
     " paid a yearly fee to borrow books, and some shops lent out novels for a small charge per volume. In Britain"
     " the Public Libraries Act of 1850 allowed town councils to raise a small tax to pay for a free library, and"
     " over the following decades hundreds of towns opened one. Many of these buildings were paid for by the"
     " Scottish American businessman Andrew Carnegie, who funded more than two thousand libraries around the"
     " English speaking world on condition that the local council would buy the books and pay the staff. Early"
     " public libraries often kept their books behind a counter, and readers had to ask a librarian for each volume"
     " they wanted. Open shelves, where readers could browse and choose for themselves, became common only at the"
     " end of the nineteenth century. Over time libraries added children's rooms, reading rooms with newspapers,"
     " and later records, films and computers with internet access. In recent years many libraries have become"
     " places where people come to study, to print documents, to get help with forms or simply to sit somewhere"
     " warm and quiet, and librarians now spend much of their time helping visitors find information online as well"
     " as on paper. Although some branches have closed, the number of visits remains high in many cities."
     " Some libraries"
     " even lend out tools, musical instruments and seeds for the garden.",
     "Who funded more than two thousand libraries?"),
]

TEXT_SETS = {
    name: [{"context": context, "question": question} for context, question in passages]
    for name, passages in (("short", SHORT), ("medium", MEDIUM), ("long", LONG))
}
"""Each length class's passages, in the order a case takes them."""
NOMINAL_TOKENS = {"short": 32, "medium": 150, "long": 380}
"""The most tokens a class's passage has with the MiniLM tokenizer: what the plan checks against a model's positions."""
